"""Drives one Pop3Connection over an asyncio transport: read → feed → events → store → write.

Theory of operation: ``Pop3Protocol`` is an ``asyncio.Protocol`` (not streams) because
STLS needs to know exactly which bytes arrived before the handshake: everything received
after the STLS line and before the TLS layer takes over is dropped (RFC 2595 section 4),
which streams cannot do without touching their private buffer.  One task per connection
(``_run``) pulls events from the sans-IO connection and answers them; it does not read a
new command until the previous reply has been handed to the transport and the transport
is below its high-water mark (back-pressure, as Dovecot's output throttle).  Login events
(USER/PASS, SASL) go to the session's ``LoginFlow`` (``server/login.py``), which also
holds the maildrop lock until UPDATE or the end of the connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from popbox import message
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
from popbox.server.login import LoginFlow
from popbox.server.observe import SessionObserver
from popbox.store.base import StoreError

if TYPE_CHECKING:
    import ssl

    import structlog

    from popbox.protocol.connection import ConnectionSettings, Event
    from popbox.server.context import ServerContext

__all__ = ["Pop3Protocol"]

READ_PAUSE_THRESHOLD = 256 * 1024  # stop reading while this much is queued unanswered
JOIN_LIMIT = 64 * 1024  # replies up to this size go out as one buffer


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
        self._data_ready = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._lost = False
        self._dropping_plaintext = False
        # Decrypted bytes that arrive before ``start_tls`` returns: held back until the
        # connection has heard ``tls_established``, which forgets what came before it.
        self._tls_early: bytearray | None = None
        self._shutting_down = False
        self._unanswered = 0
        self._login = LoginFlow(server, self._conn, self._observe, session_id)
        self._task: asyncio.Task[None] | None = None
        self._log: structlog.typing.FilteringBoundLogger = server.log
        # The inactivity timer (V0002): one timer per session, moved lazily (see
        # _wait_for_data) instead of one timeout per command.
        self._timer: asyncio.TimerHandle | None = None
        self._wait_until = 0.0
        self._waiting = False
        self._expired = False

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
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._server.sessions.add(self)

    def data_received(self, data: bytes) -> None:
        if self._dropping_plaintext:
            return  # RFC 2595 s4: plaintext between STLS and the handshake is discarded
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._observe.received(data)
        self._conn.receive_data(data)
        self._unanswered += len(data)
        if self._unanswered > READ_PAUSE_THRESHOLD and self._transport is not None:
            self._transport.pause_reading()
        self._data_ready.set()

    def eof_received(self) -> bool:
        self._lost = True
        self._data_ready.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - any loss ends it
        self._lost = True
        self._data_ready.set()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- control from the listener ----------------------------------------------------

    def shutdown(self) -> None:
        """Close this session once its current command is answered: -ERR line, no UPDATE."""
        self._shutting_down = True
        self._data_ready.set()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- the session ------------------------------------------------------------------

    async def _run(self) -> None:
        self._log.info("connect", tls=self._settings.tls_active)
        try:
            await self._serve()
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            self._log.exception("session_failed")
        finally:
            await self._cleanup()

    async def _serve(self) -> None:
        conn = self._conn
        deadline = self._deadline()
        lines_seen = conn.lines_received
        while True:
            # Cleared before the buffer is read, not when waiting: bytes that arrive while
            # _flush waits for a slow reader must still wake the wait that follows.
            self._data_ready.clear()
            event = conn.next_event()
            await self._flush()
            if conn.lines_received != lines_seen:  # V0002: any command resets the timer
                lines_seen = conn.lines_received
                deadline = self._deadline()
            if event is Signal.CLOSED:
                return
            if event is Signal.NEED_DATA:
                if self._lost:
                    return  # dropped connection: no UPDATE (RFC 1939 s6)
                if self._shutting_down:
                    conn.shutdown()
                elif not await self._wait_for_data(deadline):
                    conn.timed_out(self._timeout())
                continue
            await self._answer(event)
            if isinstance(event, StartTls) and not conn.tls_active:
                return  # the handshake failed and the connection is gone: nothing to answer

    async def _wait_for_data(self, deadline: float) -> bool:
        """Wait for bytes until ``deadline``; False when the inactivity timer expired."""
        self._unanswered = 0
        if self._transport is not None and not self._lost:
            self._transport.resume_reading()
        if self._data_ready.is_set():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # The timer is armed for an earlier deadline most of the time: when it fires it
        # re-arms itself for the current one.  So a command costs two assignments here,
        # not a timer created and cancelled, which the RETR and login paths felt.
        self._wait_until = deadline
        loop = asyncio.get_running_loop()
        if self._timer is not None and self._timer.when() > loop.time() + remaining:
            self._timer.cancel()  # the deadline moved earlier (a shorter timeout applies)
            self._timer = None
        if self._timer is None:
            self._timer = loop.call_later(remaining, self._timer_fired)
        self._waiting = True
        try:
            await self._data_ready.wait()
        finally:
            self._waiting = False
        if self._expired:
            self._expired = False
            return False
        return True

    def _timer_fired(self) -> None:
        self._timer = None
        if not self._waiting:
            return  # a command is being answered; the next wait arms the timer again
        remaining = self._wait_until - time.monotonic()
        if remaining > 0:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._timer_fired)
            return
        self._expired = True
        self._data_ready.set()

    async def _answer(self, event: Event) -> None:
        match event:
            case PasswordLogin() | SaslStart() | SaslContinue() | SaslCancelled():
                await self._login.answer(event)
                self._log = self._login.log  # bound with user= if that logged in
            case StartTls():
                await self._start_tls()
            case Retrieve():
                await self._retrieve(event)
            case Update(deleted, retrieved):
                await self._update(deleted, retrieved)

    async def _start_tls(self) -> None:
        await self._flush()
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

    async def _retrieve(self, event: Retrieve) -> None:
        user = self._conn.user
        assert user is not None
        try:
            wire = await self._server.store.fetch(user, event.info.uid)
        except StoreError:
            self._log.warning("fetch_store_error", uid=event.info.uid)
            self._conn.store_failed()
            return
        if wire is None:
            self._conn.message_gone()  # C0004: removed behind this session's back
        elif event.lines is None:
            self._observe.body = wire
            self._conn.send_message(wire)
        else:
            self._observe.body = message.top_lines(wire, event.lines)
            self._conn.send_message(self._observe.body)

    async def _update(self, deleted: tuple[int, ...], retrieved: tuple[int, ...]) -> None:
        user = self._conn.user
        assert user is not None
        store = self._server.store
        try:
            removed = await store.delete(user, deleted) if deleted else 0
            if retrieved:
                await store.mark_retrieved(user, retrieved, time.time())
        except StoreError:
            self._log.warning("update_failed", marked=len(deleted))
            await self._login.release_lock()
            self._conn.update_finished(ok=False)
            return
        self._log.info("update", deleted=removed)
        # RFC 1939 s6: UPDATE releases the maildrop before the +OK, so a client that
        # reconnects as soon as it reads it does not find the maildrop still locked.
        await self._login.release_lock()
        self._conn.update_finished(ok=True)

    async def _flush(self) -> None:
        records = self._conn.take_records()
        chunks = self._conn.data_to_send()
        if records or chunks:  # half of the calls have nothing to say: skip the bookkeeping
            for record in records:
                self._log.info("command", verb=record.verb, ok=record.ok)
            self._observe.flushed(records, chunks)
            if chunks and self._transport is not None and not self._transport.is_closing():
                if len(chunks) > 1 and sum(map(len, chunks)) <= JOIN_LIMIT:
                    # One buffer: over TLS, one record instead of one per chunk.
                    chunks = [b"".join(chunks)]
                self._transport.writelines(chunks)
        if not self._can_write.is_set():
            await self._can_write.wait()

    async def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.sessions.discard(self)
        self._observe.closed()
        await self._login.release_lock()
        if self._transport is not None:
            self._transport.close()
        self._log.info("disconnect")

    def _timeout(self) -> float:
        pop3 = self._server.config.pop3
        authed = self._conn.user is not None
        return pop3.authenticated_timeout if authed else pop3.unauthenticated_timeout

    def _deadline(self) -> float:
        return time.monotonic() + self._timeout()


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
        return self._session.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.connection_lost(exc)

    def pause_writing(self) -> None:
        self._session.pause_writing()

    def resume_writing(self) -> None:
        self._session.resume_writing()
