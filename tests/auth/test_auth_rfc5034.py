"""AUTH (RFC 5034) through the real server, byte by byte over raw sockets."""

from __future__ import annotations

import base64

import pytest

PASSWORD = "alice secret"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.fixture
def server(auth_server):
    server = auth_server()
    server.add_user("alice", PASSWORD)
    return server


def capa(client) -> list[bytes]:
    assert client.ask(b"CAPA\r\n").startswith(b"+OK")
    return client.multiline()


def sasl_line(client) -> bytes:
    return next(line for line in capa(client) if line.startswith(b"SASL"))


def test_capa_hides_plaintext_mechanisms_before_tls_v0010(server):
    """V0010 / RFC 5034 s3: the SASL capability lists only mechanisms allowed on this
    connection: before TLS under secure_login, not PLAIN or LOGIN."""
    client = server.connect()
    assert sasl_line(client) == b"SASL SCRAM-SHA-256\r\n"
    assert client.ask(b"STLS\r\n").startswith(b"+OK")
    client.start_tls(server.client_context())
    assert sasl_line(client) == b"SASL PLAIN LOGIN SCRAM-SHA-256\r\n"


def test_capa_over_implicit_tls_lists_every_mechanism(server):
    assert sasl_line(server.connect(tls=True)) == b"SASL PLAIN LOGIN SCRAM-SHA-256\r\n"


def test_plaintext_mechanism_refused_before_tls_v0010(server):
    """V0010: refused plaintext logins get -ERR."""
    client = server.connect()
    reply = client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n")
    assert reply == b"-ERR PLAIN is only allowed over TLS, issue STLS first\r\n"


def test_plaintext_login_type_allows_plain_without_tls(auth_server):
    server = auth_server(pop3={"login_type": "plaintext_login"})
    server.add_user("alice", PASSWORD)
    client = server.connect()
    assert sasl_line(client) == b"SASL PLAIN LOGIN SCRAM-SHA-256\r\n"
    reply = client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n")
    assert reply.startswith(b"+OK")


def test_bare_auth_lists_mechanisms_ms_oxpop3(server):
    """[MS-OXPOP3]: bare AUTH answers +OK, one mechanism per line, then "."."""
    client = server.connect(tls=True)
    assert client.ask(b"AUTH\r\n").startswith(b"+OK")
    assert client.multiline() == [b"PLAIN\r\n", b"LOGIN\r\n", b"SCRAM-SHA-256\r\n"]


def test_initial_response_logs_in_at_once_rfc5034_s4(server):
    """RFC 5034 s4: the optional initial response is a base64 argument of AUTH."""
    client = server.connect(tls=True)
    reply = client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n")
    assert reply == b"+OK logged in, 0 messages (0 octets)\r\n"


def test_no_initial_response_gets_empty_continuation_rfc5034_s4(server):
    """RFC 5034 s4: "a server challenge ... consists of a line containing "+" and a
    single space, followed by the challenge in base64" (empty for PLAIN)."""
    client = server.connect(tls=True)
    assert client.ask(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert client.ask(b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n").startswith(b"+OK")


def test_equals_sign_is_an_empty_initial_response_rfc5034_s4(server):
    """RFC 5034 s4: "If the initial response ... is empty, the client sends "="."""
    client = server.connect(tls=True)
    assert client.ask(b"AUTH LOGIN =\r\n") == b"+ " + b64(b"Username:") + b"\r\n"
    client = server.connect(tls=True)
    assert client.ask(b"AUTH PLAIN =\r\n").startswith(b"-ERR [AUTH] ")


def test_login_continuations_username_then_password(server):
    client = server.connect(tls=True)
    assert client.ask(b"AUTH LOGIN\r\n") == b"+ VXNlcm5hbWU6\r\n"
    assert client.ask(b64(b"alice") + b"\r\n") == b"+ UGFzc3dvcmQ6\r\n"
    assert client.ask(b64(PASSWORD.encode()) + b"\r\n").startswith(b"+OK logged in")


def test_star_cancels_and_session_continues_rfc5034_s4(server):
    """RFC 5034 s4: "If the client wishes to cancel the authentication exchange, it
    issues a line with a single "*".  If the server receives such a response, it MUST
    reject the AUTH command by sending an -ERR reply.\""""
    client = server.connect(tls=True)
    assert client.ask(b"AUTH LOGIN\r\n").startswith(b"+ ")
    assert client.ask(b"*\r\n") == b"-ERR authentication cancelled\r\n"
    reply = client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n")
    assert reply.startswith(b"+OK")


def test_malformed_base64_initial_response_is_rejected_rfc5034_s4(server):
    """RFC 5034 s4: "If the client ... sends a response that is not valid base64 ... the
    server MUST reject the AUTH command"."""
    client = server.connect(tls=True)
    assert (
        client.ask(b"AUTH PLAIN AGFsaWNl*\r\n") == b"-ERR initial response is not valid base64\r\n"
    )
    assert client.ask(b"NOOP\r\n").startswith(b"-ERR")  # still AUTHORIZATION


def test_malformed_base64_continuation_cancels_rfc5034_s4(server):
    client = server.connect(tls=True)
    assert client.ask(b"AUTH LOGIN\r\n").startswith(b"+ ")
    reply = client.ask(b"not base64!\r\n")
    assert reply == b"-ERR SASL response is not valid base64, authentication cancelled\r\n"
    assert client.ask(b"AUTH LOGIN\r\n").startswith(b"+ ")


def test_failed_auth_carries_auth_resp_code_rfc5034_s6(server):
    """RFC 5034 s6 / RFC 3206: AUTH-RESP-CODE: a failure because of bad credentials is
    answered with the [AUTH] response code."""
    client = server.connect(tls=True)
    assert b"AUTH-RESP-CODE\r\n" in capa(client)
    reply = client.ask(b"AUTH PLAIN " + b64(b"\0alice\0wrong") + b"\r\n")
    assert reply == b"-ERR [AUTH] authentication failed\r\n"


def test_unknown_mechanism_is_refused_rfc5034_s4(server):
    client = server.connect(tls=True)
    assert (
        client.ask(b"AUTH CRAM-MD5\r\n")
        == b"-ERR unsupported authentication mechanism CRAM-MD5\r\n"
    )


def test_auth_after_login_is_refused_rfc5034_s4(server):
    """RFC 5034 s4: AUTH is valid in the AUTHORIZATION state only."""
    client = server.connect(tls=True)
    assert client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n").startswith(
        b"+OK"
    )
    assert client.ask(b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n") == (
        b"-ERR AUTH is only allowed before login\r\n"
    )
    assert client.ask(b"STAT\r\n") == b"+OK 0 0\r\n"


def test_long_auth_line_is_accepted_past_max_command_size_rfc5034_s4(server):
    """RFC 5034 s4: SASL responses are not bound by the command length limit; an AUTH
    line carrying an initial response of 700+ octets (a token, say) is accepted while
    an ordinary command of that length is still refused."""
    nonce = b"N" * 700
    line = b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=alice,r=" + nonce) + b"\r\n"
    assert len(line) > 900
    client = server.connect()
    reply = client.ask(line)
    assert reply.startswith(b"+ ")
    assert base64.b64decode(reply[2:]).startswith(b"r=" + nonce)
    assert client.ask(b"*\r\n") == b"-ERR authentication cancelled\r\n"
    assert client.ask(b"USER " + b"u" * 600 + b"\r\n") == (
        b"-ERR line too long: the limit is 512 octets including CRLF\r\n"
    )


def test_auth_line_over_sasl_line_max_is_refused(auth_server):
    server = auth_server(pop3={"sasl_line_max": 2048})
    client = server.connect()
    line = b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=alice,r=" + b"N" * 2000) + b"\r\n"
    assert client.ask(line) == b"-ERR line too long: the limit is 2048 octets including CRLF\r\n"
    assert client.ask(b"NOOP\r\n").startswith(b"-ERR NOOP is not allowed")


def test_repeated_failures_close_the_connection_c0005(server):
    """C0005: the server may close after repeated authentication failures."""
    client = server.connect(tls=True)
    for _ in range(2):
        assert client.ask(b"AUTH PLAIN " + b64(b"\0alice\0x") + b"\r\n").startswith(b"-ERR [AUTH]")
    assert client.ask(b"AUTH PLAIN " + b64(b"\0alice\0x") + b"\r\n").startswith(b"-ERR [AUTH]")
    assert client.line() == b"-ERR too many failed logins, closing connection\r\n"
    assert client.closed()
