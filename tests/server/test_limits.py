"""Connection and session limits: the bookkeeping, then the replies on real sockets.

RFC 3206 section 4: [SYS/TEMP] says the failure is temporary and a retry later may work,
which is what a full server or a user with too many sessions is.
"""

from __future__ import annotations

import poplib
import socket
import time
from typing import TYPE_CHECKING

import pytest

from popbox.server.limits import ConnectionLimits, LimitSettings, LocalLimiter
from popbox_servers import USERS

if TYPE_CHECKING:
    import ssl

TIMEOUT = 10.0


# -- bookkeeping ------------------------------------------------------------------------


def test_zero_means_no_limit():
    limits = ConnectionLimits(LimitSettings())
    for _ in range(1000):
        assert limits.admit("192.0.2.1") is None
        assert limits.login("alice") is None
    assert limits.connections == 1000


def test_max_connections_counts_every_address():
    limits = ConnectionLimits(LimitSettings(max_connections=2))
    assert limits.admit("192.0.2.1") is None
    assert limits.admit("192.0.2.2") is None
    refused = limits.admit("192.0.2.3")
    assert refused is not None
    assert refused.limit == "max_connections"
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.3") is None


def test_max_connections_per_ip_counts_one_address():
    limits = ConnectionLimits(LimitSettings(max_connections_per_ip=2))
    assert limits.admit("192.0.2.1") is None
    assert limits.admit("192.0.2.1") is None
    refused = limits.admit("192.0.2.1")
    assert refused is not None
    assert refused.limit == "max_connections_per_ip"
    assert limits.admit("192.0.2.2") is None
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.1") is None


def test_max_sessions_per_user_counts_logins():
    limits = ConnectionLimits(LimitSettings(max_sessions_per_user=1))
    assert limits.login("alice") is None
    refused = limits.login("alice")
    assert refused is not None
    assert refused.limit == "max_sessions_per_user"
    assert limits.login("bob") is None
    limits.logout("alice")
    assert limits.login("alice") is None


def test_refusal_is_sys_temp_rfc3206_s4():
    """RFC 3206 s4: SYS/TEMP: "a temporary system problem ... may be resolved"."""
    refused = ConnectionLimits(LimitSettings(max_connections=1))
    refused.admit("192.0.2.1")
    reply = refused.admit("192.0.2.2")
    assert reply is not None
    assert reply.reply.code is not None
    assert reply.reply.code.value == "SYS/TEMP"


def test_release_of_what_was_never_admitted_changes_nothing():
    limits = ConnectionLimits(LimitSettings(max_connections=1))
    limits.release("192.0.2.9")
    limits.logout("nobody")
    assert limits.connections == 0
    assert limits.connections_from("192.0.2.9") == 0
    assert limits.sessions_of("nobody") == 0
    assert limits.admit("192.0.2.1") is None


def test_counts_drop_to_nothing_when_everything_is_released():
    limits = ConnectionLimits(LimitSettings(max_connections_per_ip=5))
    for i in range(100):
        limits.admit(f"192.0.2.{i}")
    for i in range(100):
        limits.release(f"192.0.2.{i}")
    assert limits.connections == 0
    assert not limits._per_ip  # the table does not grow with addresses seen long ago


def test_new_settings_apply_to_the_next_admission():
    limiter = LocalLimiter(LimitSettings(max_connections=1))
    assert limiter.limits.admit("192.0.2.1") is None
    assert limiter.limits.admit("192.0.2.2") is not None
    limiter.configure(LimitSettings(max_connections=3))
    assert limiter.limits.admit("192.0.2.2") is None


# -- on the wire ------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), TIMEOUT)


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def refusals(server) -> list[dict]:
    return [e for e in server.log.events() if e.get("event") == "connection_refused"]


def test_max_connections_refuses_with_sys_temp_and_a_log_entry(start_pop3_server):
    server = start_pop3_server(sections={"server": {"max_connections": 2}})
    held = [connect(server.port), connect(server.port)]
    try:
        for sock in held:
            assert read_line(sock).startswith(b"+OK ")
        with connect(server.port) as third:
            line = read_line(third)
            assert (
                line == b"-ERR [SYS/TEMP] too many connections to this server, try again later\r\n"
            )
            assert third.recv(10) == b""  # and closed
        [event] = refusals(server)
        assert event["limit"] == "max_connections"
        assert event["level"] == "warning"
        assert event["peer"].startswith("127.0.0.1:")
    finally:
        for sock in held:
            sock.close()
    # A closed connection frees its place.
    deadline = time.monotonic() + TIMEOUT
    while True:
        with connect(server.port) as again:
            if read_line(again).startswith(b"+OK "):
                break
        assert time.monotonic() < deadline, "the released connections were never freed"
        time.sleep(0.05)


def test_refusal_on_the_tls_port_comes_after_the_handshake(start_pop3_server):
    """A client on port 995 can only read the -ERR line inside TLS."""
    server = start_pop3_server(sections={"server": {"max_connections_per_ip": 1}})
    context = server.tls.client_context()
    with context.wrap_socket(connect(server.tls_port), server_hostname="localhost") as first:
        assert read_line(first).startswith(b"+OK ")
        with context.wrap_socket(connect(server.tls_port), server_hostname="localhost") as second:
            assert read_line(second).startswith(b"-ERR [SYS/TEMP] too many connections from")
    assert refusals(server)[0]["limit"] == "max_connections_per_ip"


@pytest.mark.parametrize("compat", ["exchange2007", "exchange2013", "exchange-online"])
def test_exchange_profiles_refuse_a_connection_without_a_response_code_rfc2449_s8(
    start_pop3_server, compat
):
    """RFC 2449 s8: response codes are for servers whose CAPA lists RESP-CODES; Exchange's
    lists none (MailKit#119, vmime#267), so under its profiles the refusal at accept time
    carries the reason only."""
    server = start_pop3_server(
        sections={"compat": compat, "server": {"max_connections_per_ip": 1}}  # type: ignore[dict-item]
    )
    with connect(server.port) as first:
        assert read_line(first).startswith(b"+OK ")
        with connect(server.port) as second:
            assert read_line(second).startswith(b"-ERR too many connections from")


def test_max_sessions_per_user_refuses_the_login_with_sys_temp(start_pop3_server):
    server = start_pop3_server(
        {"login_type": "plaintext_login"}, sections={"server": {"max_sessions_per_user": 1}}
    )
    first = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    second = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        first.user("alice")
        first.pass_(USERS["alice"])
        second.user("alice")
        with pytest.raises(poplib.error_proto) as refused:
            second.pass_(USERS["alice"])
        assert refused.value.args[0] == (
            b"-ERR [SYS/TEMP] too many sessions for this user (limit 1), try again later"
        )
        second.user("bob")  # another user is not affected
        second.pass_(USERS["bob"])
        events = [e for e in server.log.events() if e.get("event") == "login_refused_limit"]
        assert [(e["user"], e["limit"]) for e in events] == [("alice", "max_sessions_per_user")]
    finally:
        first.quit()
        second.quit()
    again = poplib.POP3(server.host, server.port, timeout=TIMEOUT)  # alice's slot is free
    again.user("alice")
    again.pass_(USERS["alice"])
    again.quit()


def test_failed_login_does_not_hold_a_user_session(start_pop3_server):
    server = start_pop3_server(
        {"login_type": "plaintext_login"}, sections={"server": {"max_sessions_per_user": 1}}
    )
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user("alice")
        with pytest.raises(poplib.error_proto):
            client.pass_("wrong")
        client.user("alice")
        client.pass_(USERS["alice"])
    finally:
        client.quit()
