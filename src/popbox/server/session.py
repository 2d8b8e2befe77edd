"""Drives one Pop3Connection over an asyncio transport: read → feed → events → store → write.

Theory of operation: ``Pop3Protocol`` is an ``asyncio.Protocol`` (not streams) because
STLS needs to know exactly which bytes arrived before the handshake: everything received
after the STLS line and before the TLS layer takes over is dropped (RFC 2595 section 4),
which streams cannot do without touching their private buffer.

The session is always in one ``Stage`` and moves only along ``server/stage.py``'s table
(which lists the stages, from greeting to closed).  Commands are answered in the callback
that received them (``_pump``): the sans-IO connection answers most of them itself, and a
RETR whose body the store can read at once (``body_now``) is answered there too.  Only an
event that must wait (a login, STLS, a large or remote body, room in the memory budget,
UPDATE) starts a task; until it is answered no further command is read from the buffer,
which keeps replies in order (RFC 2449 PIPELINING).  A session without such a task has no
coroutine at all, which is what makes a small RETR cheap and an idle session small.

Nothing is amplified: one turn answers a bounded amount (the connection's pacing,
``Signal.PAUSED``), then the session lets the loop run other connections and goes on
soon after; no command is answered while output waits (``server/outbox.py``), reading
stops once ``link.READ_PAUSE_THRESHOLD`` octets wait unanswered, and large bodies count
against the process's memory budget (``server/budget.py``) until they have left it.
Login events go to the session's ``LoginFlow`` (``server/loginflow.py``), which also holds
the maildrop lock until UPDATE or the end of the connection; RETR, TOP and UPDATE go to
its ``MailFlow`` (``server/mailflow.py``); the inactivity timer is ``server/progress.py``'s;
the transport, its reading and its closing are its ``ClientLink`` (``server/link.py``);
what happens once at connect and at close, and the timeouts that bound the session, are
its ``SessionEnds`` (``server/ends.py``).
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
from popbox.server.budget import BodyHold
from popbox.server.ends import CLOSE_LINGER, SessionEnds
from popbox.server.link import ClientLink
from popbox.server.loginflow import LoginFlow
from popbox.server.mailflow import MailFlow
from popbox.server.observe import SessionObserver
from popbox.server.progress import Output
from popbox.server.stage import ANSWERING, Stage, check_transition
from popbox.server.starttls import TlsSide, upgrade

if TYPE_CHECKING:
    import structlog

    from popbox.protocol.connection import ConnectionSettings, Event
    from popbox.server.context import ServerContext

__all__ = ["Pop3Protocol"]


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
        self._settings = settings
        self._conn = Pop3Connection(settings)
        self._observe = SessionObserver(server, self._conn, session_id)  # metrics, log, roster
        self._stage = Stage.GREETING
        self._link = ClientLink(self._observe)
        self._outbox = self._link.outbox
        self._hold = BodyHold(server.budget)
        self._task: asyncio.Task[None] | None = None  # answering an event that must wait
        self._soon: asyncio.Handle | None = None  # the next turn after a paced one
        self._tls: TlsSide | None = None  # the protocol behind the TLS layer, after STLS
        self._login = LoginFlow(server, self._conn, self._observe, session_id)
        self._mail = MailFlow(server, self._conn, self._login)
        self._ends = SessionEnds(
            server, session_id, self._conn, self._observe, self._login, self._link, client=client
        )
        self._log: structlog.typing.FilteringBoundLogger = server.log
        self._log_commands = server.config.server.log_level == "debug"
        self._idle = self._ends.timer(  # V0002
            lambda: self._task is not None, self._output_state, self._expire
        )
        self._lines_seen = 0

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def output_blocked(self) -> bool:
        """The client is not taking its replies: no further command is answered meanwhile."""
        return self._outbox.busy

    # -- asyncio.Protocol callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio's.
        self._link.attach(cast("asyncio.Transport", transport))
        self._log = self._ends.arrive(self, transport, tls=self._settings.tls_active)
        self._idle.arm()
        self._enter(Stage.SERVING)
        self._pump()  # the greeting

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            return  # RFC 2595 s4: plaintext between STLS and the handshake is discarded
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._observe.received(data)
        conn = self._conn
        conn.receive_data(data)
        if self._task is None and not self._outbox.busy:
            self._pump()
        # Whatever could not be answered yet waits in the connection's buffer, up to a cap.
        if self._stage is not Stage.LOST:
            self._link.read_less(conn.buffered)

    def eof_received(self) -> bool:
        # The client has sent everything (a half-close, as `nc -N` does): what it sent is
        # still answered, and the session ends when that runs out.  Over TLS asyncio
        # cannot keep a half-closed connection open, so there it closes as it would.
        if self._stage in {Stage.SERVING, Stage.UPGRADING, Stage.DRAINING}:
            self._enter(Stage.HALF_CLOSED)
            if self._task is None:
                self._pump()
        return not self._settings.tls_active

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - any loss ends it
        self._link.lost()
        if self._stage not in ANSWERING:
            return
        if self._stage is not Stage.LOST:
            self._enter(Stage.LOST)
        if self._task is None:
            self._pump()

    def pause_writing(self) -> None:
        self._outbox.pause()

    def resume_writing(self) -> None:
        self._outbox.resume()
        self._idle.touch()  # a client that reads is not inactive
        self._settle()
        if self._task is None and not self._outbox.busy:
            self._pump()

    # -- control from the listener ----------------------------------------------------

    def shutdown(self) -> None:
        """Close this session once its current command is answered: -ERR line, no UPDATE.

        A session whose client is not reading what it was sent is cut off at once.
        """
        before = self._stage
        if before in {Stage.SERVING, Stage.UPGRADING}:
            self._enter(Stage.DRAINING)
        elif before is not Stage.HALF_CLOSED:
            return  # ending already
        if self._task is not None:
            return  # _wait_for pumps once the current command is answered
        if self._outbox.busy and self._link.transport is not None:
            self._stop_now()
        elif before is not Stage.HALF_CLOSED:
            self._pump()

    def kick(self) -> None:
        """An administrator ends the session: as ``shutdown``, with its own -ERR text."""
        self._ends.kicked = True
        self.shutdown()

    @property
    def observer(self) -> SessionObserver:
        return self._observe

    def describe(self) -> dict[str, object]:
        """Who, from where, how, since when, how much (``server/roster.py``)."""
        return self._observe.describe(self._ends.peer, self._login.mechanism, self._link.transport)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._ends.closed)

    # -- the session ------------------------------------------------------------------

    def _pump(self) -> None:
        """Answer the buffered commands that need no waiting; hand one that does to a task."""
        try:
            while self._stage in ANSWERING:
                if self._outbox.busy and self._stage is not Stage.LOST:
                    if self._stage is Stage.DRAINING and self._link.transport is not None:
                        # A stopping server does not wait for a client that is not reading.
                        self._stop_now()
                        continue
                    return  # resume_writing comes back here
                if not self._turn():
                    return
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            self._log.exception("session_failed")
            self._finish()

    def _turn(self) -> bool:
        """One event from the connection; True: go on with the next one at once."""
        conn = self._conn
        event = conn.next_event()
        if conn.lines_received != self._lines_seen:  # V0002: any command resets it
            self._lines_seen = conn.lines_received
            self._idle.touch()
        if event is Signal.PAUSED:
            self._flush()
            self._continue_soon()  # let other connections run first
            return False
        if event is Signal.NEED_DATA:
            self._flush()
            if self._stage is Stage.DRAINING:
                conn.shutdown(by_admin=self._ends.kicked)
                return True
            if self._stage in {Stage.LOST, Stage.HALF_CLOSED}:
                self._finish()  # no QUIT came: no UPDATE (RFC 1939 s6)
            else:
                self._link.read_more()
            return False
        if event is Signal.CLOSED:
            self._flush()
            self._finish()
            return False
        admitted = True
        if isinstance(event, Retrieve):
            lost = self._stage is Stage.LOST
            admitted = lost or self._hold.take_now(event.info)
            if admitted and self._mail.answer_now(event, lost=lost):
                self._hold.read_done(event.info)
                self._flush()  # a body per write: the buffer stays one message deep
                return True
        self._flush()
        self._task = asyncio.get_running_loop().create_task(self._wait_for(event, admitted))
        return False

    def _continue_soon(self) -> None:
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._soon = None
        if self._task is None:
            self._pump()

    async def _wait_for(self, event: Event, admitted: bool) -> None:  # noqa: FBT001
        """Answer an event that must wait, then go on with the buffered commands."""
        try:
            await self._answer(event, admitted=admitted)
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
            self._ends.linger = min(self._server.config.pop3.authenticated_timeout, CLOSE_LINGER)
        self._pump()

    async def _answer(self, event: Event, *, admitted: bool) -> None:
        match event:
            case PasswordLogin() | SaslStart() | SaslContinue() | SaslCancelled():
                await self._login.answer(event)
                self._log = self._login.log  # bound with user= if that logged in
            case StartTls():
                await self._start_tls()
            case Retrieve(_, info):
                if not admitted and not await self._hold.take(info):
                    self._log.warning("memory_budget_full", octets=info.size)
                    self._conn.store_failed()
                    return
                if self._stage is Stage.LOST:
                    self._conn.store_failed()  # nobody to send it to: do not read it
                else:
                    await self._mail.retrieve(event)
                self._hold.read_done(info)
            case Update(deleted, retrieved):
                await self._mail.update(deleted, retrieved)

    async def _start_tls(self) -> None:
        if self._stage is Stage.SERVING:
            self._enter(Stage.UPGRADING)
        outbox = self._outbox
        side = self._tls = TlsSide(
            self._feed, self.eof_received, self.connection_lost, outbox.pause, self.resume_writing
        )
        tls, transport = self._server.tls, self._link.transport
        if tls is None or transport is None or self._stage is Stage.LOST:
            return  # not upgraded: _wait_for ends the session
        wait = self._server.config.pop3.handshake_timeout  # may change on reload
        upgraded = await upgrade(transport, side, tls.context, self._log, handshake_timeout=wait)
        if upgraded is None:
            return  # the handshake failed and the connection is gone
        self._link.attach(upgraded)
        self._conn.tls_established()
        if self._stage is Stage.UPGRADING:
            self._enter(Stage.SERVING)
        early = side.ready()
        if early:
            self._feed(early)

    def _output_state(self) -> Output:
        return self._link.output_state() if self._stage in ANSWERING else Output.IDLE

    def _expire(self, stuck: bool) -> None:  # noqa: FBT001 - InactivityTimer's callback
        if self._stage not in ANSWERING:
            return
        self._conn.timed_out(self._ends.timeout())  # V0003: one -ERR line, no UPDATE
        if stuck:
            self._cut_off()  # the client takes nothing: the line cannot reach it
        self._pump()

    def _flush(self) -> None:
        chunks = self._conn.data_to_send()
        if not chunks:
            return  # half of the calls have nothing to say (every record comes with output)
        records = self._conn.take_records()
        if self._log_commands:  # tested here: a filtered-out call costs as much as counting
            for record in records:
                self._log.debug("command", verb=record.verb, ok=record.ok)
        size = self._observe.flushed(records, chunks)
        if self._stage is not Stage.LOST:
            self._link.send(chunks, size)
        self._settle()

    def _settle(self) -> None:
        # Not while a task runs: it may be reading a body reserved for, which has not
        # reached the outbox yet.
        if self._task is None:
            self._hold.settle(self._outbox)

    def _enter(self, stage: Stage) -> None:
        self._stage = check_transition(self._stage, stage)

    def _finish(self) -> None:
        """End the session: release the lock, close the transport, say so (once)."""
        if self._stage not in ANSWERING:
            return
        self._enter(Stage.CLOSING)
        self._idle.cancel()
        if self._soon is not None:
            self._soon.cancel()
        self._task = asyncio.get_running_loop().create_task(self._cleanup())

    async def _cleanup(self) -> None:
        try:
            await self._ends.depart(self, self._log)
        finally:
            self._hold.release()
            self._enter(Stage.CLOSED)
            self._ends.closed.set_result(None)

    def _stop_now(self) -> None:
        """Stop without waiting for a client that does not read: what it pipelined is
        dropped with the connection (no UPDATE, as for any shutdown)."""
        self._conn.shutdown(by_admin=self._ends.kicked)
        self._cut_off()

    def _cut_off(self) -> None:
        self._link.cut_off()
        if self._stage in ANSWERING and self._stage is not Stage.LOST:
            self._enter(Stage.LOST)
