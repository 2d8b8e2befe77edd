"""LMTP listeners (RFC 2033) on aiosmtpd, delivering through ``DeliveryAgent``.

Theory of operation: aiosmtpd's ``LMTP`` class parses the commands and calls the
envelope hooks of ``LmtpHandler``: LHLO (the extensions RFC 2033 s5 requires), MAIL
(SIZE, RFC 1870), RCPT (is there such a mailbox, is there room in it).  ``LmtpSession``
replaces aiosmtpd's DATA, which answers once for the whole transaction: RFC 2033 s4.2
wants one reply per accepted RCPT, in RCPT order, after the data.  Each recipient's
copy is committed by the store before its own reply is written, so a message that got
a 250 survives a crash; one that did not is still queued at the MTA, which sends it
again (at-least-once, never lost).

The payload is read line by line into a ``DataReader`` that stops keeping octets past
``[lmtp] max_message_size`` (the refusal comes after the data, RFC 5321 s4.5.3.1.10)
and spools what it keeps to a file past ``[lmtp] spool_threshold`` (``spool.py``);
aiosmtpd's stream buffer keeps whatever a pipelining client sent after the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING, AnyStr, Protocol

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, syntax

from popbox.delivery import lmtp_protocol as lp
from popbox.delivery.agent import DeliveryAgent
from popbox.delivery.lmtp_handler import LmtpEnvelope, LmtpHandler
from popbox.delivery.spool import SPOOL_DIR, prepare_spool_dir
from popbox.net.bind import address_of, bind_listeners
from popbox.net.listener import ProtocolListener

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import structlog

    from popbox.config import Config
    from popbox.directory.chain import DirectoryChain
    from popbox.net.bind import Listening
    from popbox.observability.metrics import Metrics
    from popbox.store.base import MailStore

__all__ = ["LmtpContext", "LmtpServer", "LmtpSession"]

_TIMER_RESET_OCTETS = 1 << 20  # a long DATA keeps the idle timer from firing


class LmtpContext(Protocol):
    """What the LMTP listeners take from the server context (``ServerContext`` has it).

    A protocol rather than the POP3 server's own class: delivery/ never imports server/.
    """

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> MailStore: ...
    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def directories(self) -> DirectoryChain: ...


class LmtpSession(LMTP):
    """One LMTP connection: aiosmtpd's command loop with popbox's DATA and replies."""

    def __init__(
        self,
        handler: LmtpHandler,
        *,
        hostname: str,
        timeout: float,
        on_close: Callable[[LmtpSession], None],
        peer: tuple[str, int] | None = None,  # from a PROXY header; None: the socket's peer
    ) -> None:
        self._proxied_peer = peer
        super().__init__(
            handler,
            data_size_limit=None,  # SIZE is announced and checked by the handler
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="popbox LMTP",
            timeout=timeout,
            loop=asyncio.get_running_loop(),
        )
        self._popbox_handler = handler
        self._on_close = on_close
        self._exempt = False
        # Clear between the end of DATA and the last reply: shutdown waits for it.
        self.idle = asyncio.Event()
        self.idle.set()

    def _create_envelope(self) -> Envelope:
        return LmtpEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._proxied_peer is not None and self.session is not None:
            # Before the command loop runs: Received lines and logs name the real client.
            # aiosmtpd annotates peer as str but stores what peername gives: a tuple.
            self.session.peer = self._proxied_peer  # type: ignore[assignment]

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._on_close(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        # RFC 2034 s3: every reply but the greeting and LHLO's carries an enhanced code.
        if isinstance(status, str) and not self._exempt and not status.startswith("220 "):
            await super().push(lp.with_enhanced_code(status))
        else:
            await super().push(status)

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's method name
        self._exempt = True
        try:
            await super().smtp_LHLO(arg)
        finally:
            self._exempt = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's method name
        if await self.check_helo_needed("LHLO"):
            return
        envelope = self.envelope
        assert isinstance(envelope, LmtpEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 5.5.1 need a valid RCPT command first")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = self._popbox_handler.new_data()
        try:
            await self._read_data(data)
            self.envelope = self._create_envelope()  # a fresh one for the next transaction
            assert self.session is not None
            self.idle.clear()
            try:
                async for reply in self._popbox_handler.deliver(self.session, envelope, data):
                    await self.push(reply)
            finally:
                self.idle.set()
        finally:
            data.sink.discard()  # frees the spool file, whatever happened

    async def _read_data(self, data: lp.DataReader) -> None:
        unreset = 0
        while True:
            try:
                chunk = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                # A line longer than the stream's limit: take the part before the
                # limit; asyncio never splits the CRLF itself between two reads.
                chunk = await self._reader.read(exc.consumed)
            except asyncio.IncompleteReadError as exc:
                raise ConnectionResetError("the client closed the connection in DATA") from exc
            if data.feed(chunk):
                return
            unreset += len(chunk)
            if unreset > _TIMER_RESET_OCTETS:
                unreset = 0
                self._reset_timeout()


class LmtpServer:
    """The LMTP listeners of one process (``[lmtp] listen``: TCP and unix sockets)."""

    def __init__(self, context: LmtpContext) -> None:
        config = context.config
        self._full_config = config
        self._config = config.lmtp
        self._grace = config.pop3.shutdown_grace
        self.hostname = config.lmtp.hostname or socket.getfqdn()
        log = context.log.bind(service="lmtp")
        agent = DeliveryAgent(
            context.store,
            config.quota,
            hostname=self.hostname,
            log=log,
            dedup_window=config.lmtp.dedup_window,
            directories=context.directories,
        )
        spool_dir = config.data_dir / SPOOL_DIR
        prepare_spool_dir(spool_dir)
        self._handler = LmtpHandler(
            agent,
            config.lmtp,
            hostname=self.hostname,
            log=log,
            metrics=context.metrics,
            spool_dir=spool_dir,
        )
        self._servers: list[ProtocolListener] = []
        self._unix_paths: list[Path] = []
        self._sessions: set[LmtpSession] = set()
        self._proxies = config.server  # trusted_proxies: TCP connections from them carry
        self._log = log  # a PROXY header first (net/proxied.py)

    async def start(self, sockets: Sequence[socket.socket] | None = None) -> list[Listening]:
        """Bind ``[lmtp] listen``, or accept on ``sockets`` a supervisor bound for us."""
        if sockets is None:
            sockets = [s for _, s in bind_listeners(self._full_config, pop3=False, lmtp=True)]
            # Ours to remove on stop; a supervisor removes the paths it bound itself.
            self._unix_paths = [
                Path(s.getsockname()) for s in sockets if s.family == socket.AF_UNIX
            ]
        for sock in sockets:
            self._servers.append(
                ProtocolListener(
                    "lmtp",
                    sock,
                    self._new_session,
                    proxies=self._proxies,
                    log=self._log,
                )
            )
        return [("lmtp", *address_of(sock)) for sock in sockets]

    def _new_session(self, client: tuple[str, int] | None = None) -> LmtpSession:
        session = LmtpSession(
            self._handler,
            hostname=self.hostname,
            timeout=self._config.timeout,
            on_close=self._sessions.discard,
            peer=client,
        )
        self._sessions.add(session)
        return session

    async def stop(self) -> None:
        """Stop accepting; let deliveries in progress finish (up to the grace); close."""
        for server in self._servers:
            server.close()
        # Idle connections (an MTA's connection cache) are closed at once: a transaction
        # cut before its replies is still queued at the MTA and will be sent again.
        busy = [asyncio.ensure_future(s.idle.wait()) for s in self._sessions]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self._grace)
            for waiter in pending:
                waiter.cancel()
        for session in list(self._sessions):
            session.close()
        for server in self._servers:
            await server.wait_closed()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
