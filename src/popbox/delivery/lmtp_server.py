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
``[lmtp] max_message_size`` (the refusal comes after the data, RFC 5321 s4.5.3.1.10),
and aiosmtpd's stream buffer keeps whatever a pipelining client sent after the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, syntax

from popbox.config import parse_address
from popbox.delivery import lmtp_protocol as lp
from popbox.delivery.agent import DeliveryAgent
from popbox.delivery.lmtp_handler import LmtpEnvelope, LmtpHandler

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from popbox.net.proxied import ProxiedListener
    from popbox.server.context import ServerContext
    from popbox.server.listener import Listening

__all__ = ["LmtpServer", "LmtpSession", "bind_unix_listener"]

_TIMER_RESET_OCTETS = 1 << 20  # a long DATA keeps the idle timer from firing
UNIX_SOCKET_MODE = 0o666  # the MTA's delivery agent runs as its own user (as Dovecot's)


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
        data = await self._read_data()
        self.envelope = self._create_envelope()  # a fresh one for the next transaction
        assert self.session is not None
        self.idle.clear()
        try:
            async for reply in self._popbox_handler.deliver(self.session, envelope, data):
                await self.push(reply)
        finally:
            self.idle.set()

    async def _read_data(self) -> lp.DataReader:
        data = lp.DataReader(self._popbox_handler.max_message_size)
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
                return data
            unreset += len(chunk)
            if unreset > _TIMER_RESET_OCTETS:
                unreset = 0
                self._reset_timeout()


class LmtpServer:
    """The LMTP listeners of one process (``[lmtp] listen``: TCP and unix sockets)."""

    def __init__(self, context: ServerContext) -> None:
        config = context.config
        self._config = config.lmtp
        self._grace = config.pop3.shutdown_grace
        self.hostname = config.lmtp.hostname or socket.getfqdn()
        log = context.log.bind(service="lmtp")
        agent = DeliveryAgent(context.store, config.quota, hostname=self.hostname, log=log)
        self._handler = LmtpHandler(
            agent, config.lmtp, hostname=self.hostname, log=log, metrics=context.metrics
        )
        self._servers: list[asyncio.Server | ProxiedListener] = []
        self._unix_paths: list[Path] = []
        self._sessions: set[LmtpSession] = set()
        self._proxies = config.server  # trusted_proxies: TCP connections from them carry
        self._log = log  # a PROXY header first (server/proxy_accept.py)

    async def start(self, sockets: Sequence[socket.socket] | None = None) -> list[Listening]:
        """Bind ``[lmtp] listen``, or accept on ``sockets`` a supervisor bound for us."""
        loop = asyncio.get_running_loop()
        listening: list[Listening] = []
        for sock in sockets or ():
            # The supervisor owns these sockets (and removes a unix socket's path itself).
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(self._new_session, sock=sock)
                listening.append(("lmtp", f"unix:{sock.getsockname()}", -1))
                self._servers.append(server)
            else:
                listening.extend(await self._serve_tcp([sock]))
        for address in () if sockets is not None else self._config.listen:
            host, port = parse_address(address, "lmtp.listen", allow_unix=True)
            if port < 0:
                path = Path(host)
                _remove_stale_socket(path)
                server = await loop.create_unix_server(self._new_session, str(path))
                _open_to_mta(path)
                self._unix_paths.append(path)
                listening.append(("lmtp", f"unix:{path}", -1))
                self._servers.append(server)
            else:
                # Imported here: server/accept.py imports this module.
                from popbox.server.accept import bind_socket  # noqa: PLC0415

                listening.extend(await self._serve_tcp(bind_socket(host, port)))
        return listening

    async def _serve_tcp(self, sockets: list[socket.socket]) -> list[Listening]:
        # Imported here: it imports server/accept.py, which imports this module.
        from popbox.net.proxied import ProxiedListener  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        for sock in sockets:
            if self._proxies.trusted_proxies:
                self._servers.append(
                    ProxiedListener(
                        sock,
                        self._new_session,
                        trusted=self._proxies.trusted_proxies,
                        header_timeout=self._proxies.proxy_header_timeout,
                        log=self._log,
                    )
                )
            else:
                self._servers.append(
                    await loop.create_server(self._new_session, sock=sock, backlog=1024)
                )
        return [("lmtp", *_address_of(sock)) for sock in sockets]

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


def bind_unix_listener(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` the MTA may connect to (for a supervisor)."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(1024)
        sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
        _open_to_mta(path)
    except OSError:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: Path) -> None:
    # A socket left by a process that died; anything else at that path is not ours.
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"lmtp.listen: {path} exists and is not a socket")
    path.unlink()


def _open_to_mta(path: Path) -> None:
    path.chmod(UNIX_SOCKET_MODE)


def _address_of(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), port
