"""Session rules that need a real server and several clients: snapshot, lock, login, timers.

Seed clauses: C0004 (snapshot instead of a lock), 2.1.3 (`lock_mailbox`), V0010 (where
passwords may be sent), V0002/V0003 (inactivity timers), V0008/V0009 (no user
enumeration), C0005 (closing after repeated errors).
"""

from __future__ import annotations

import poplib
import select
import time

import pytest

from pop3_clients import MESSAGES, RawClient, assert_mailbox, login, pop3_ssl, pop3_stls
from popbox.clock import ManualClock
from popbox_servers import USERS


def test_delivery_during_a_session_is_invisible_to_it_c0004(pop3_server):
    """C0004: the session works on the snapshot taken at login; later mail waits."""
    first = pop3_server.deliver("alice", *MESSAGES[:2])
    session = login(pop3_server)
    try:
        [late] = pop3_server.deliver("alice", MESSAGES[2])
        assert session.stat() == (2, first[0].info.size + first[1].info.size)
        _, uidls, _ = session.uidl()
        assert len(uidls) == 2
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR no message 3"):
            session.retr(3)
    finally:
        session.quit()
    assert_mailbox(pop3_server, "alice", [*first, late])


def test_message_deleted_by_another_session_gives_err_on_retr_c0004(pop3_server):
    """C0004: RETR of a message removed behind the session's back gets -ERR, not garbage."""
    delivered = pop3_server.deliver("alice", *MESSAGES[:3])
    slow = login(pop3_server)
    try:
        fast = login(pop3_server)
        fast.dele(1)
        assert fast.quit() == b"+OK signing off, 1 message deleted"
        assert slow.stat()[0] == 3  # still the login snapshot
        with pytest.raises(poplib.error_proto, match="message 1 was deleted by another session"):
            slow.retr(1)
        with pytest.raises(poplib.error_proto, match="message 1 was deleted by another session"):
            slow.top(1, 0)
        _, lines, _ = slow.retr(2)
        assert b"".join(line + b"\r\n" for line in lines) == delivered[1].text
        slow.dele(2)
    finally:
        assert slow.quit() == b"+OK signing off, 1 message deleted"
    assert_mailbox(pop3_server, "alice", [delivered[2]])


def test_message_deleted_after_the_session_read_ahead_still_gives_err_c0004(pop3_server):
    """C0004 with read-ahead: RETR 1 has the next bodies read with it; one of them is
    then deleted by another session, and RETR of it must still get -ERR."""
    delivered = pop3_server.deliver("alice", *MESSAGES[:4])
    slow = login(pop3_server)
    try:
        _, lines, _ = slow.retr(1)  # reads messages 1-4 in one go
        assert b"".join(line + b"\r\n" for line in lines) == delivered[0].text
        fast = login(pop3_server)
        fast.dele(3)
        assert fast.quit() == b"+OK signing off, 1 message deleted"
        _, lines, _ = slow.retr(2)
        assert b"".join(line + b"\r\n" for line in lines) == delivered[1].text
        with pytest.raises(poplib.error_proto, match="message 3 was deleted by another session"):
            slow.retr(3)
        _, lines, _ = slow.retr(4)
        assert b"".join(line + b"\r\n" for line in lines) == delivered[3].text
    finally:
        assert slow.quit() == b"+OK signing off, 0 messages deleted"
    assert_mailbox(pop3_server, "alice", [delivered[0], delivered[1], delivered[3]])


def test_lock_mailbox_refuses_a_second_session_with_in_use_rfc2449_s8_1_1(start_pop3_server):
    """2.1.3 / RFC 2449 s8.1.1: with lock_mailbox a second login gets -ERR [IN-USE]."""
    server = start_pop3_server({"lock_mailbox": True})
    delivered = server.deliver("alice", MESSAGES[0])
    holder = login(server)
    second = pop3_ssl(server)
    try:
        second.user("alice")
        with pytest.raises(poplib.error_proto) as refused:
            second.pass_(USERS["alice"])
        assert refused.value.args[0].startswith(b"-ERR [IN-USE] ")
        other_user = login(server, "bob")  # the lock is per maildrop
        other_user.quit()
    finally:
        second.close()
        holder.quit()
    assert_mailbox(server, "alice", delivered)  # released at QUIT


def test_secure_login_refuses_user_before_stls_and_capa_agrees_v0010(pop3_server):
    """V0010 secure_login: no USER before TLS, and CAPA does not advertise it there."""
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    try:
        capabilities = client.capa()
        assert "USER" not in capabilities
        assert "STLS" in capabilities
        with pytest.raises(poplib.error_proto, match="only allowed over TLS"):
            client.user("alice")
        client.stls(pop3_server.tls.client_context())
        capabilities = client.capa()
        assert "USER" in capabilities
        assert "STLS" not in capabilities  # RFC 2595 s4: not offered once TLS is up
        client.user("alice")
        assert client.pass_(USERS["alice"]).startswith(b"+OK logged in")
    finally:
        client.quit()


def test_plaintext_login_allows_user_without_tls_v0010(start_pop3_server):
    """V0010 plaintext_login: USER/PASS work on the plain port, and CAPA says so."""
    server = start_pop3_server({"login_type": "plaintext_login"})
    client = poplib.POP3(server.host, server.port, timeout=10)
    try:
        assert "USER" in client.capa()
        client.user("alice")
        assert client.pass_(USERS["alice"]).startswith(b"+OK logged in")
    finally:
        client.quit()


def test_unauthenticated_timer_sends_one_err_line_then_closes_v0002_v0003(start_pop3_server):
    """V0002/V0003: on expiry one -ERR line announcing the close, then the close."""
    server = start_pop3_server({"unauthenticated_timeout": 1}, clock=ManualClock())
    with RawClient.connect(server.host, server.port) as raw:
        assert raw.line().startswith(b"+OK")
        server.advance(0.9)
        assert not select.select([raw.sock], [], [], 0.05)[0]  # not yet
        server.advance(0.1)
        assert raw.read_to_eof() == b"-ERR connection closed after 1 second of inactivity\r\n"


def test_authenticated_timer_closes_without_update_v0003(start_pop3_server):
    """V0003: an expired session does not enter UPDATE: messages marked deleted stay."""
    server = start_pop3_server({"authenticated_timeout": 1}, clock=ManualClock())
    delivered = server.deliver("alice", *MESSAGES[:2])
    with RawClient.connect(server.host, server.tls_port, tls=server.tls.client_context()) as raw:
        raw.line()
        raw.send(f"USER alice\r\nPASS {USERS['alice']}\r\nDELE 1\r\nDELE 2\r\n".encode())
        assert [line[:3] for line in raw.lines(4)] == [b"+OK"] * 4
        server.advance(1.0)
        assert raw.read_to_eof() == b"-ERR connection closed after 1 second of inactivity\r\n"
    assert_mailbox(server, "alice", delivered)


def test_any_command_resets_the_inactivity_timer_v0002(start_pop3_server):
    """V0002: the timer counts from the last command, not from the connection."""
    server = start_pop3_server({"unauthenticated_timeout": 1}, clock=ManualClock())
    with RawClient.connect(server.host, server.port) as raw:
        raw.line()
        for _ in range(3):  # 1.8 s in all: longer than the timeout
            server.advance(0.6)
            raw.send(b"CAPA\r\n")
            assert raw.multiline().startswith(b"+OK")
        raw.send(b"QUIT\r\n")
        assert raw.read_to_eof() == b"+OK signing off\r\n"


def _failed_login(server, user: str, password: str) -> tuple[bytes, bytes, float]:
    with RawClient.connect(server.host, server.tls_port, tls=server.tls.client_context()) as raw:
        raw.line()
        raw.send(f"USER {user}\r\n".encode())
        user_reply = raw.line()
        started = time.monotonic()
        raw.send(f"PASS {password}\r\n".encode())
        pass_reply = raw.line()
        return user_reply, pass_reply, time.monotonic() - started


def test_unknown_user_and_wrong_password_look_the_same_v0008_v0009(start_pop3_server):
    """V0008/V0009: USER is always +OK; PASS fails with the same bytes after the same work."""
    # No extra delay and no lockout: only the password check itself is timed.
    server = start_pop3_server(
        {"auth_failure_delay": 0},
        sections={"auth": {"ip_lockout_failures": 0, "user_lockout_failures": 0}},
    )
    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(_failed_login(server, "alice", "not the password"))
        unknown.append(_failed_login(server, "mallory", "not the password"))
    assert (
        {w[:2] for w in wrong}
        == {u[:2] for u in unknown}
        == {(b"+OK send PASS\r\n", b"-ERR [AUTH] authentication failed\r\n")}
    )
    # Both verify one argon2id hash; skipping it for unknown users would be ~30x faster.
    # The fastest of several tries is the cost itself, whatever else loads the machine.
    wrong_time = min(w[2] for w in wrong)
    unknown_time = min(u[2] for u in unknown)
    assert 0.5 < unknown_time / wrong_time < 2, (wrong_time, unknown_time)


def test_too_many_bad_commands_close_the_connection_c0005(start_pop3_server):
    """C0005: after max_bad_commands -ERR replies the server says why and closes."""
    server = start_pop3_server({"max_bad_commands": 3})
    with RawClient.connect(server.host, server.port) as raw:
        raw.line()
        raw.send(b"BOGUS\r\nRETR 1\r\nXYZZY 1 2 3\r\nNOOP\r\n")
        lines = raw.read_to_eof().splitlines(keepends=True)
    assert len(lines) == 4
    assert all(line.startswith(b"-ERR ") for line in lines)
    assert lines[-1] == b"-ERR too many invalid commands, closing connection\r\n"
    client = pop3_stls(server)  # the server itself carries on
    client.quit()
