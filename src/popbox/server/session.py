"""Drives one Pop3Connection over an asyncio transport: read → feed → events → store → write.

Theory of operation: ``Pop3Protocol`` is an ``asyncio.Protocol`` (not streams) because
STLS needs to know exactly which bytes arrived before the handshake: everything received
after the STLS line and before the TLS layer takes over is dropped (RFC 2595 section 4),
which streams cannot do without touching their private buffer.

Commands are answered in the callback that received them (``_pump``): the sans-IO
connection answers most of them itself, and a RETR whose body the store can read at once
(``fetch_now``) is answered there too.  Only an event that must wait (a login, STLS, a
large or remote body, UPDATE) starts a task; until it is answered no further command is
read from the buffer, which keeps replies in order (RFC 2449 PIPELINING).  A session
without such a task has no coroutine at all, which is what makes a small RETR cheap and
an idle session small.  Nothing more is read while the transport is above its high-water
mark (back-pressure, as Dovecot's output throttle).  Login events (USER/PASS, SASL) go to
the session's ``LoginFlow`` (``server/loginflow.py``), which also holds the maildrop lock
until UPDATE or the end of the connection; RETR, TOP and UPDATE go to its ``MailFlow``
(``server/mailflow.py``); the inactivity timer is ``server/progress.py``'s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from popbox.protocol.connection import (
    PasswordLogin,
    Pop3Connection,
    Retrieve,
    SaslCancelled,
    SaslContinue,
    SaslStart,
    Signal,
    StartTls,
    Update,
)
from popbox.server.loginflow import LoginFlow
from popbox.server.mailflow import MailFlow
from popbox.server.observe import SessionObserver
from popbox.server.progress import InactivityTimer, Output, OutputWatch

if TYPE_CHECKING:
    import ssl

    import structlog

    from popbox.protocol.connection import ConnectionSettings, Event
    from popbox.server.context import ServerContext

__all__ = ["Pop3Protocol"]

READ_PAUSE_THRESHOLD = 256 * 1024  # stop reading while this much is queued unanswered
JOIN_LIMIT = 64 * 1024  # replies up to this size go out as one buffer
CLOSE_LINGER = 30.0  # seconds a closed session's last replies may take to drain, at most


class Pop3Protocol(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self,
        server: ServerContext,
        settings: ConnectionSettings,
        session_id: str,
        *,
        client: tuple[str, int] | None = None,  # from a PROXY header; None: the socket's peer
    ) -> None:
        self._server = server
        self._client = client
        self._observe = SessionObserver(server)  # metrics, per-user limit, protocol log
        self._settings = settings
        self._session_id = session_id
        self._conn = Pop3Connection(settings)
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()  # the session has ended
        self._transport_gone: asyncio.Future[None] = loop.create_future()  # connection_lost
        self._task: asyncio.Task[None] | None = None  # answering an event that must wait
        self._can_write = True
        self._reading_paused = False
        self._lost = False  # the connection is gone: nothing can be written or read
        self._eof = False  # the client will send nothing more, but may still read
        self._finishing = False
        self._dropping_plaintext = False
        # Decrypted bytes that arrive before ``start_tls`` returns: held back until the
        # connection has heard ``tls_established``, which forgets what came before it.
        self._tls_early: bytearray | None = None
        self._shutting_down = False
        self._unanswered = 0
        self._login = LoginFlow(server, self._conn, self._observe, session_id)
        self._mail = MailFlow(server, self._conn, self._observe, self._login)
        self._log: structlog.typing.FilteringBoundLogger = server.log
        self._log_commands = server.config.server.log_level == "debug"
        self._idle = InactivityTimer(  # V0002
            self._timeout, lambda: self._task is not None, self._output_state, self._expire
        )
        self._output = OutputWatch()  # whether a silent client still reads what it is owed
        # How long closing may wait for the last replies to drain (the timeout, at most).
        self._linger = min(server.config.pop3.unauthenticated_timeout, CLOSE_LINGER)
        self._lines_seen = 0

    # -- asyncio.Protocol callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio's.
        self._transport = cast("asyncio.Transport", transport)
        peer = self._client or transport.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "-")
        # Brute-force accounting is per source IP, not per port.
        peer_ip = str(peer[0]) if isinstance(peer, tuple) else address
        self._log = self._server.log.bind(session=self._session_id, peer=address)
        self._login.attach(address, peer_ip, self._log)
        self._server.sessions.add(self)
        self._log.info("connect", tls=self._settings.tls_active)
        self._idle.arm()
        self._pump()  # the greeting

    def data_received(self, data: bytes) -> None:
        if self._dropping_plaintext:
            return  # RFC 2595 s4: plaintext between STLS and the handshake is discarded
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._observe.received(data)
        self._conn.receive_data(data)
        if self._task is None and self._can_write:
            self._pump()
            return
        # Busy: the bytes wait in the connection's buffer, up to a limit.
        self._unanswered += len(data)
        if self._unanswered > READ_PAUSE_THRESHOLD and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        # The client has sent everything (a half-close, as `nc -N` does): what it sent is
        # still answered, and the session ends when that runs out.  Over TLS asyncio
        # cannot keep a half-closed connection open, so there it closes as it would.
        self._eof = True
        if self._task is None:
            self._pump()
        return not self._settings.tls_active

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - any loss ends it
        self._lost = True
        self._can_write = True  # nothing will drain now; do not wait for it
        if not self._transport_gone.done():
            self._transport_gone.set_result(None)
        if self._task is None:
            self._pump()

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        self._idle.touch()  # a client that reads is not inactive
        if self._task is None:
            self._pump()

    # -- control from the listener ----------------------------------------------------

    def shutdown(self) -> None:
        """Close this session once its current command is answered: -ERR line, no UPDATE.

        A session whose client is not reading what it was sent is cut off at once.
        """
        self._shutting_down = True
        if self._task is None:
            self._pump()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- the session ------------------------------------------------------------------

    def _pump(self) -> None:
        """Answer the buffered commands that need no waiting; hand one that does to a task."""
        conn = self._conn
        if not self._can_write and self._shutting_down and self._transport is not None:
            # A stopping server does not wait for a client that is not reading; what it
            # pipelined is dropped with the connection (no UPDATE, as for any shutdown).
            conn.shutdown()
            self._abort(self._transport)
            return
        try:
            while self._can_write and not self._finishing:
                event = conn.next_event()
                if conn.lines_received != self._lines_seen:  # V0002: any command resets it
                    self._lines_seen = conn.lines_received
                    self._idle.touch()
                if event is Signal.NEED_DATA:
                    self._flush()
                    if self._lost or self._eof:
                        self._finish()  # no QUIT came: no UPDATE (RFC 1939 s6)
                    elif self._shutting_down:
                        conn.shutdown()
                        continue
                    else:
                        self._read_more()
                    return
                if event is Signal.CLOSED:
                    self._flush()
                    self._finish()
                    return
                if isinstance(event, Retrieve) and self._mail.answer_now(event, lost=self._lost):
                    self._flush()  # a body per write: the buffer stays one message deep
                    continue
                self._flush()
                self._task = asyncio.get_running_loop().create_task(self._wait_for(event))
                return
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            self._log.exception("session_failed")
            self._finish()

    def _read_more(self) -> None:
        self._unanswered = 0
        if self._reading_paused and self._transport is not None and not self._lost:
            self._reading_paused = False
            self._transport.resume_reading()

    async def _wait_for(self, event: Event) -> None:
        """Answer an event that must wait, then go on with the buffered commands."""
        try:
            await self._answer(event)
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            self._log.exception("session_failed")
            self._task = None
            self._finish()
            return
        self._task = None
        if isinstance(event, StartTls) and not self._conn.tls_active:
            self._finish()  # the handshake failed and the connection is gone
            return
        # V0002 counts inactivity from the answer too: a slow answer (a failed login's
        # delay, a slow store) must not leave the client no time to send the next command.
        # And a login changes which timeout applies.
        self._idle.touch()
        self._idle.arm()
        if self._conn.user is not None:  # closing waits as long as the session would
            self._linger = min(self._server.config.pop3.authenticated_timeout, CLOSE_LINGER)
        self._pump()

    def _output_state(self) -> Output:
        transport = self._transport
        if transport is None or self._finishing:
            return Output.IDLE
        return self._output.look(transport, self._observe.sent)

    def _expire(self, stuck: bool) -> None:  # noqa: FBT001 - InactivityTimer's callback
        if self._finishing:
            return
        self._conn.timed_out(self._timeout())  # V0003: one -ERR line, no UPDATE
        if stuck and self._transport is not None:
            self._abort(self._transport)  # the client takes nothing: the line cannot reach it
        self._can_write = True
        self._pump()

    async def _answer(self, event: Event) -> None:
        match event:
            case PasswordLogin() | SaslStart() | SaslContinue() | SaslCancelled():
                await self._login.answer(event)
                self._log = self._login.log  # bound with user= if that logged in
            case StartTls():
                await self._start_tls()
            case Retrieve():
                await self._mail.retrieve(event)
            case Update(deleted, retrieved):
                await self._mail.update(deleted, retrieved)

    async def _start_tls(self) -> None:
        self._dropping_plaintext = True
        tls = self._server.tls
        transport = self._transport
        if tls is None or transport is None or self._lost:
            self._lost = True
            return
        context: ssl.SSLContext = tls.context
        self._tls_early = bytearray()
        try:
            new_transport = await asyncio.get_running_loop().start_tls(
                transport, _TlsSide(self), context, server_side=True, ssl_handshake_timeout=30
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            self._log.info("stls_failed", error=type(exc).__name__)
            self._lost = True
            transport.abort()
            return
        if new_transport is None:  # the connection went away during the handshake
            self._lost = True
            return
        self._transport = new_transport
        self._conn.tls_established()
        early, self._tls_early = self._tls_early, None
        if early:
            self._feed(bytes(early))

    def _tls_data_received(self, data: bytes) -> None:
        if self._tls_early is not None:
            self._tls_early += data  # the handshake just finished; see _start_tls
        else:
            self._feed(data)

    def _flush(self) -> None:
        chunks = self._conn.data_to_send()
        if not chunks:
            return  # half of the calls have nothing to say (every record comes with output)
        records = self._conn.take_records()
        if self._log_commands:  # tested here: a filtered-out call costs as much as counting
            for record in records:
                self._log.debug("command", verb=record.verb, ok=record.ok)
        size = self._observe.flushed(records, chunks)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if len(chunks) == 1:
                transport.write(chunks[0])
            elif size <= JOIN_LIMIT:
                # One buffer, one write(): over TLS, one record instead of one per chunk.
                transport.write(b"".join(chunks))
            else:
                transport.writelines(chunks)

    def _finish(self) -> None:
        """End the session: release the lock, close the transport, say so (once)."""
        if self._finishing:
            return
        self._finishing = True
        self._idle.cancel()
        self._task = asyncio.get_running_loop().create_task(self._cleanup())

    async def _cleanup(self) -> None:
        try:
            self._server.sessions.discard(self)
            self._observe.closed()
            try:
                await self._login.release_lock()
            except Exception:  # noqa: BLE001 - the connection must close whatever happened
                self._log.exception("session_failed")
            await self._close_transport()
            self._log.info("disconnect", **self._observe.summary())
        finally:
            self._closed.set_result(None)

    async def _close_transport(self) -> None:
        """Close once the last replies are out; abort if the client does not take them.

        The session counts against its client's connection limit until the socket is
        really gone, so a client that leaves unread replies behind cannot pile up sockets.
        """
        transport = self._transport
        if transport is None or self._lost:
            return
        transport.close()
        try:
            async with asyncio.timeout(self._linger):
                await asyncio.shield(self._transport_gone)
        except TimeoutError:
            self._abort(transport)

    def _abort(self, transport: asyncio.Transport) -> None:
        """Drop the connection; what never left this process is not counted as sent.

        (What the kernel already holds may still reach the client after the close.)
        """
        self._observe.unsent(transport.get_write_buffer_size())
        transport.abort()

    def _timeout(self) -> float:
        pop3 = self._server.config.pop3
        authed = self._conn.user is not None
        return pop3.authenticated_timeout if authed else pop3.unauthenticated_timeout


class _TlsSide(asyncio.Protocol):
    """The protocol behind the TLS layer after STLS.

    Decrypted bytes come through here, so they are never mistaken for the plaintext the
    session drops; bytes the client sends right after its handshake (curl sends CAPA at
    once) can arrive before ``start_tls`` returns, and must be kept: the session holds
    them until the connection knows TLS is up.
    """

    def __init__(self, session: Pop3Protocol) -> None:
        self._session = session

    def data_received(self, data: bytes) -> None:
        self._session._tls_data_received(data)  # noqa: SLF001 - the session's own other half

    def eof_received(self) -> bool:
        self._session.eof_received()
        return False  # asyncio's TLS layer closes the connection after EOF in any case

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.connection_lost(exc)

    def pause_writing(self) -> None:
        self._session.pause_writing()

    def resume_writing(self) -> None:
        self._session.resume_writing()
