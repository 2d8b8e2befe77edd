"""The callback-driven session at its edges: lost connections, STLS, shutdown, back-pressure.

A session answers commands in the protocol callbacks and waits in a task only for what
must wait (login, STLS, a body the store cannot give at once, UPDATE).  These tests drive
the in-process server over real sockets at the points where that design has to get the
order of things right: a client that pipelines QUIT and closes still gets its UPDATE, one
that drops without QUIT does not (RFC 1939 s6); plaintext pipelined after STLS never
reaches the TLS session while a command sent right after the handshake is answered
(RFC 2595 s4); a shutdown during a task lets that command finish first; reading paused
behind a slow task resumes; the inactivity timer (V0002/V0003) does not cut a session
while the server itself is still answering.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import TYPE_CHECKING, Any

from popbox.clock import ManualClock
from popbox.server.link import READ_PAUSE_THRESHOLD
from popbox.server.stage import Stage
from popbox.store.base import Pending
from raw_pop3 import CRLF, LOGIN, PLAINTEXT, TIMEOUT, Client, wait_until

if TYPE_CHECKING:
    from popbox_servers import InProcessServer

ONE = b"Subject: one\r\n\r\nfirst\r\n"
TWO = b"Subject: two\r\n\r\nsecond\r\n"


def session_named(server: InProcessServer, client: Client) -> str:
    """The session id of ``client``'s connection, from its connect log line."""
    [connect] = wait_until(
        lambda: [e for e in server.log.events("connect") if e["peer"] == client.peer]
    )
    return str(connect["session"])


def events_of(server: InProcessServer, event: str, session: str) -> list[dict[str, Any]]:
    return [e for e in server.log.events(event) if e.get("session") == session]


def slow_fetch(
    server: InProcessServer, monkeypatch: Any, delay: float, clock: ManualClock | None = None
) -> threading.Event:
    """Make every RETR wait ``delay`` s in a task; the event is set when one starts waiting.

    With ``clock`` the wait is on that clock, which the test advances.
    """
    started = threading.Event()

    async def slow(handle: Any, uid: int) -> bytes | None:
        started.set()
        await (clock.sleep(delay) if clock is not None else asyncio.sleep(delay))
        return await handle.body(uid)  # type: ignore[no-any-return]

    wrapped = server.store.wrapped
    rewired = HandleHooks(wrapped, body_now=lambda _handle, _uid: Pending.FETCH, body=slow)
    monkeypatch.setattr(server.store, "wrapped", rewired)
    return started


class HandleHooks:
    """A store whose maildrop handles send ``body_now``/``body`` through the given hooks."""

    def __init__(self, store: Any, **hooks: Any) -> None:
        self._store = store
        self._hooks = hooks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def open_maildrop(self, name: str) -> Any:
        return HookedHandle(await self._store.open_maildrop(name), self._hooks)


class HookedHandle:
    def __init__(self, handle: Any, hooks: dict[str, Any]) -> None:
        self._handle = handle
        self._hooks = hooks
        self.messages = handle.messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def body_now(self, uid: int) -> Any:
        hook = self._hooks.get("body_now")
        return self._handle.body_now(uid) if hook is None else hook(self._handle, uid)

    async def body(self, uid: int) -> Any:
        hook = self._hooks.get("body")
        return await (self._handle.body(uid) if hook is None else hook(self._handle, uid))


def shut_down_sessions(server: InProcessServer) -> None:
    """What the listener does once the shutdown grace is over: ``shutdown()`` each session."""

    async def shut() -> None:
        for session in server.sessions():
            session.shutdown()

    server.call(shut())


# -- a lost connection: UPDATE only after a QUIT the client sent (RFC 1939 s6) ----------


def test_pipelined_dele_and_quit_then_close_still_updates_rfc1939_s6(start_pop3_server):
    """The client sent QUIT: the connection closing before the replies does not undo it.

    Login, DELE and QUIT go in one send and the socket is closed at once, so the
    connection is gone while the login is still being answered in its task; the DELE and
    QUIT buffered behind it are answered afterwards, and QUIT enters UPDATE (V0006).
    """
    server = start_pop3_server(PLAINTEXT)
    [one, two] = server.deliver("alice", ONE, TWO)
    with Client.connect(server) as client:
        session = session_named(server, client)
        client.send(LOGIN + b"DELE 1\r\nQUIT\r\n")
    [update] = wait_until(lambda: events_of(server, "update", session))
    assert update["deleted"] == 1
    assert server.uids("alice") == [two.info.uid]
    assert one.info.uid not in server.uids("alice")
    wait_until(lambda: server.session_count() == 0)


def test_a_client_that_drops_without_quit_gets_no_update_rfc1939_s6(start_pop3_server):
    """DELE then a dropped connection: the session ends, and nothing is removed."""
    server = start_pop3_server(PLAINTEXT)
    delivered = server.deliver("alice", ONE, TWO)
    with Client.connect(server) as client:
        session = session_named(server, client)
        client.log_in()
        client.send(b"DELE 1\r\n")
        assert client.line() == b"+OK message 1 deleted\r\n"
    wait_until(lambda: events_of(server, "disconnect", session))
    assert not events_of(server, "update", session)
    assert server.uids("alice") == [d.info.uid for d in delivered]
    wait_until(lambda: server.session_count() == 0)


def test_a_client_that_drops_during_a_task_gets_no_update_rfc1939_s6(
    start_pop3_server, monkeypatch
):
    """DELE, then a RETR that waits in a task, then the connection drops: no UPDATE.

    The loss arrives while the task runs; when it ends the session finds nothing more
    in its buffer and ends without entering UPDATE.
    """
    server = start_pop3_server(PLAINTEXT)
    delivered = server.deliver("alice", ONE, TWO)
    started = slow_fetch(server, monkeypatch, 0.3)
    with Client.connect(server) as client:
        session = session_named(server, client)
        client.log_in()
        client.send(b"DELE 1\r\nRETR 2\r\n")
        assert client.line() == b"+OK message 1 deleted\r\n"
        assert started.wait(TIMEOUT)
    wait_until(lambda: events_of(server, "disconnect", session))
    assert not events_of(server, "update", session)
    assert server.uids("alice") == [d.info.uid for d in delivered]


# -- STLS (RFC 2595 s4) --------------------------------------------------------------


def test_plaintext_pipelined_after_stls_is_dropped_and_early_tls_data_answered_rfc2595_s4(
    start_pop3_server,
):
    """Commands sent in plaintext behind STLS are never answered, before or after TLS.

    The client's CAPA right after its handshake may reach the server before the
    handshake has finished there: it is answered, and it is the first reply over TLS.
    """
    server = start_pop3_server(PLAINTEXT)
    with Client.connect(server) as client:
        assert client.line().startswith(b"+OK ")
        client.send(b"STLS\r\nCAPA\r\nUSER alice\r\n")
        assert client.line() == b"+OK begin TLS negotiation\r\n"
        assert client.buffer == b""
        tls = server.tls.client_context().wrap_socket(client.sock, server_hostname=server.host)
        client.sock = tls
        client.send(b"CAPA\r\n")
        assert client.line() == b"+OK capability list follows\r\n"
        capabilities = []
        while (line := client.line()) != b".\r\n":
            capabilities.append(line.strip().upper())
        assert b"STLS" not in capabilities
        assert b"USER" in capabilities
        client.send(b"PASS whatever\r\nQUIT\r\n")
        # The plaintext USER was dropped: PASS has no USER before it.
        assert client.line().startswith(b"-ERR")
        assert client.line() == b"+OK signing off\r\n"
        assert client.read_to_eof() == b""


# -- shutdown: the current command first, then -ERR, no UPDATE -------------------------


def test_shutdown_during_a_task_answers_that_command_then_closes_without_update(
    start_pop3_server, monkeypatch
):
    """The listener's shutdown() while a RETR waits on the store: the RETR is answered.

    Then one -ERR [SYS/TEMP] line, the connection closes, and the DELE before it is not
    carried out (no UPDATE).
    """
    server = start_pop3_server(PLAINTEXT)
    delivered = server.deliver("alice", ONE, TWO)
    started = slow_fetch(server, monkeypatch, 0.3)
    with Client.connect(server) as client:
        session = session_named(server, client)
        client.log_in()
        client.send(b"DELE 2\r\nRETR 1\r\n")
        assert client.line() == b"+OK message 2 deleted\r\n"
        assert started.wait(TIMEOUT)
        shut_down_sessions(server)
        got = client.read_to_eof()
    reply = b"+OK %d octets\r\n" % delivered[0].info.size + ONE + b".\r\n"
    assert got == reply + b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"
    wait_until(lambda: events_of(server, "disconnect", session))
    assert not events_of(server, "update", session)
    assert server.uids("alice") == [d.info.uid for d in delivered]
    wait_until(lambda: server.session_count() == 0)


# -- read back-pressure --------------------------------------------------------------


def test_reading_paused_behind_a_slow_task_resumes_and_every_command_is_answered(
    start_pop3_server, monkeypatch
):
    """More than READ_PAUSE_THRESHOLD octets arrive while a RETR waits on the store.

    The session stops reading until the task is answered; then every buffered and every
    later command is answered in order, QUIT last.
    """
    server = start_pop3_server(PLAINTEXT)
    [one] = server.deliver("alice", ONE)
    started = slow_fetch(server, monkeypatch, 0.3)
    noops = READ_PAUSE_THRESHOLD // len(b"NOOP\r\n") + 10_000
    with Client.connect(server) as client:
        client.log_in()
        client.send(b"RETR 1\r\n")
        assert started.wait(TIMEOUT)
        sender = threading.Thread(target=client.send, args=(b"NOOP\r\n" * noops + b"QUIT\r\n",))
        sender.start()
        try:
            got = client.read_to_eof()
        finally:
            sender.join(TIMEOUT)
    reply = b"+OK %d octets\r\n" % one.info.size + ONE + b".\r\n"
    assert got.startswith(reply)
    rest = got[len(reply) :].split(CRLF)
    assert rest[-2:] == [b"+OK signing off, 0 messages deleted", b""]
    assert len(rest) - 2 == noops
    assert set(rest[:-2]) == {b"+OK"}


# -- the inactivity timer during a task (V0002/V0003) ---------------------------------


def test_a_task_longer_than_the_timeout_is_answered_whole_v0002(start_pop3_server, monkeypatch):
    """A store slower than authenticated_timeout: the RETR still gets its whole reply.

    The timer runs out while the task waits on the store, which is not the client being
    inactive: the reply comes first, not the -ERR line of V0003.
    """
    clock = ManualClock()
    server = start_pop3_server({**PLAINTEXT, "authenticated_timeout": 1}, clock=clock)
    [one] = server.deliver("alice", ONE)
    started = slow_fetch(server, monkeypatch, 1.5, clock)
    with Client.connect(server) as client:
        client.log_in()
        client.send(b"RETR 1\r\n")
        assert started.wait(TIMEOUT)
        assert server.advance(1.0) == 1  # the timer's deadline, during the store's wait
        server.advance(0.5)  # the store answers
        assert client.line() == b"+OK %d octets\r\n" % one.info.size
        assert client.line() == b"Subject: one\r\n"


# -- found by review: half-close, lost connections, shutdown, lingering sockets --------


def big(size: int) -> bytes:
    return b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80)


def only_session(server):
    [session] = wait_until(server.sessions)
    return session


def count_reads(server: InProcessServer, monkeypatch: Any) -> list[int]:
    """Every body the maildrop handle is asked for, by uid, in order."""
    calls: list[int] = []

    def counting_now(handle: Any, uid: int) -> Any:
        calls.append(uid)
        return handle.body_now(uid)

    async def counting(handle: Any, uid: int) -> bytes | None:
        calls.append(uid)
        return await handle.body(uid)  # type: ignore[no-any-return]

    hooked = HandleHooks(server.store.wrapped, body_now=counting_now, body=counting)
    monkeypatch.setattr(server.store, "wrapped", hooked)
    return calls


def test_half_close_while_write_blocked_keeps_back_pressure(start_pop3_server, monkeypatch):
    """EOF from a client whose output is blocked must not lift back-pressure.

    200 RETRs of 200 kB (40 MB of replies) and a half-close from a client that reads
    nothing: once the session has seen the EOF, only the few bodies that fit in the
    socket buffers have been read, not all 200.
    """
    server = start_pop3_server(PLAINTEXT)
    server.deliver("alice", big(200_000))  # below INLINE_FETCH: answered by body_now
    reads = count_reads(server, monkeypatch)
    with Client.connect(server, receive_buffer=65536) as client:
        client.log_in()
        client.send(b"RETR 1\r\n" * 200)
        wait_until(lambda: server.blocked() == [True])
        client.sock.shutdown(socket.SHUT_WR)
        wait_until(lambda: server.stages() == [Stage.HALF_CLOSED])
        assert server.blocked() == [True]
        assert len(reads) < 40, f"{len(reads)} bodies read for a client that reads nothing"


def test_half_closed_client_gets_every_reply_before_update(start_pop3_server):
    """printf 'USER..PASS..RETR 1\\r\\nDELE 1\\r\\nQUIT\\r\\n' | nc -N: replies, then UPDATE."""
    server = start_pop3_server(PLAINTEXT)
    [one, _two] = server.deliver("alice", ONE, TWO)
    with Client.connect(server) as client:
        assert client.line().startswith(b"+OK ")
        client.send(LOGIN + b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        got = client.read_to_eof()
    wait_until(lambda: server.session_count() == 0)
    assert got.count(b"+OK") == 5, got  # USER, PASS, RETR, DELE and QUIT all answered
    assert got.endswith(b"+OK signing off, 1 message deleted\r\n")
    assert one.info.uid not in server.uids("alice")  # QUIT was sent: UPDATE ran


def test_lost_connection_does_not_read_every_pipelined_body(start_pop3_server, monkeypatch):
    """A reset with 5000 RETRs buffered: the server should not fetch 5000 bodies for nobody."""
    server = start_pop3_server(PLAINTEXT)
    server.deliver("alice", big(100_000))
    calls = count_reads(server, monkeypatch)
    with Client.connect(server, receive_buffer=65536) as client:
        session_id = session_named(server, client)
        client.log_in()
        client.send(b"RETR 1\r\n" * 5000)
        wait_until(lambda: server.blocked() == [True])
        before = len(calls)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_until(lambda: events_of(server, "disconnect", session_id))
    assert len(calls) - before < 50, f"{len(calls) - before} bodies read after the reset"


def test_timer_counts_from_the_answer_of_a_slow_task_v0002(start_pop3_server):
    """A failed login answered after 1.5 s (auth_failure_delay) with a 1 s timeout.

    0.9 s after the answer (2.4 s after the command) the session is still there.
    """
    clock = ManualClock()
    server = start_pop3_server(
        {**PLAINTEXT, "unauthenticated_timeout": 1, "auth_failure_delay": 1.5}, clock=clock
    )
    with Client.connect(server) as client:
        assert client.line().startswith(b"+OK ")
        client.send(b"USER alice\r\nPASS wrong\r\n")
        assert client.line() == b"+OK send PASS\r\n"
        wait_until(lambda: clock.pending() >= 2)  # the inactivity timer and the delay
        server.advance(1.5)
        assert client.line().startswith(b"-ERR")
        server.advance(0.9)
        client.send(b"USER alice\r\n")
        assert client.line() == b"+OK send PASS\r\n"


def test_shutdown_of_a_write_blocked_session_ends_it(start_pop3_server):
    """shutdown() of a session whose client reads nothing: it must still end, promptly.

    What the client pipelined behind the blocked replies is dropped with the connection:
    its DELE and QUIT never lead to an UPDATE.
    """
    server = start_pop3_server(PLAINTEXT)
    delivered = server.deliver("alice", big(1_000_000), ONE)
    with Client.connect(server, receive_buffer=65536) as client:
        client.log_in()
        session = only_session(server)
        client.send(b"DELE 2\r\n" + b"RETR 1\r\n" * 20 + b"QUIT\r\n")
        wait_until(lambda: server.blocked() == [True])

        async def shut():
            session.shutdown()
            try:
                await asyncio.wait_for(session.wait_closed(), 3)
            except TimeoutError:
                return False
            return True

        assert server.call(shut()), "the session outlived shutdown() by 3 s"
    assert server.uids("alice") == [d.info.uid for d in delivered]


def test_a_session_with_unread_output_does_not_keep_its_socket_v0003(start_pop3_server):
    """RETR of 8 MB and a half-close, never read: the socket must not stay open for ever.

    Whether the session is still answering (its reply stuck in the outbox) or closing
    (waiting for the last of it, up to the linger), time running out cuts the connection
    off: the disconnect is logged and the client's read ends short, not on an open socket.
    """
    clock = ManualClock()
    server = start_pop3_server({**PLAINTEXT, "authenticated_timeout": 1}, clock=clock)
    server.deliver("alice", big(8_000_000))  # more than the kernel's socket buffers take
    with Client.connect(server, receive_buffer=65536) as client:
        session_id = session_named(server, client)
        client.log_in()
        client.send(b"RETR 1\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        wait_until(lambda: server.blocked() in ([True], []))  # the reply is stuck
        assert not events_of(server, "disconnect", session_id)
        # Each look moves time on by a second: the timer, then the linger, run out.
        wait_until(lambda: server.advance(1.0) >= 0 and events_of(server, "disconnect", session_id))
        # The socket is closed: reading now finds the end of what had reached the kernel,
        # not the whole reply.
        assert len(client.read_to_eof()) < 8_000_000
