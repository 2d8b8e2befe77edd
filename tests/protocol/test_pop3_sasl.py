"""AUTH and the SASL exchange (RFC 5034 s4, [MS-OXPOP3], E0002)."""

from __future__ import annotations

import base64

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import (
    ConnectionSettings,
    Pop3Connection,
    SaslCancelled,
    SaslContinue,
    SaslStart,
    Signal,
)
from popbox.protocol.replies import Err
from popbox.protocol.states import State
from popbox.protocol.testing import Responder, message_info, talk

MECHANISMS = (("PLAIN", True), ("GSSAPI", False), ("NTLM", False))
SETTINGS = ConnectionSettings(tls_active=True, sasl_mechanisms=MECHANISMS)
PLAIN_RESPONSE = base64.b64encode(b"\0alice\0secret")


def fresh(settings: ConnectionSettings = SETTINGS) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


def sent(conn: Pop3Connection) -> bytes:
    return b"".join(conn.data_to_send())


def in_sasl(mechanism: str = "GSSAPI", settings: ConnectionSettings = SETTINGS) -> Pop3Connection:
    """A connection that has sent the empty challenge for ``mechanism``."""
    conn = fresh(settings)
    assert talk(conn, f"AUTH {mechanism}\r\n".encode()).events == [SaslStart(mechanism, None)]
    conn.sasl_challenge(b"")
    assert sent(conn) == R.EMPTY_CHALLENGE
    return conn


def test_bare_auth_lists_mechanisms_one_per_line_ms_oxpop3():
    """[MS-OXPOP3] (DESIGN E0002): "bare AUTH answers +OK, one mechanism per line, ."."""
    conn = fresh()
    exchange = talk(conn, b"AUTH\r\n")
    assert exchange.output == R.multiline(R.OK_MECHANISMS, b"PLAIN", b"GSSAPI", b"NTLM")
    assert exchange.events == []
    assert conn.state is State.AUTHORIZATION


def test_bare_auth_lists_only_allowed_mechanisms_v0010():
    """V0010 (DESIGN): plaintext AUTH mechanisms "follow the login_type setting"; refused
    ones are not offered in the bare AUTH list either."""
    conn = fresh(ConnectionSettings(sasl_mechanisms=MECHANISMS))
    assert talk(conn, b"AUTH\r\n").output == R.multiline(R.OK_MECHANISMS, b"GSSAPI", b"NTLM")
    conn = fresh(ConnectionSettings())
    assert talk(conn, b"AUTH\r\n").output == R.multiline(R.OK_MECHANISMS)


def test_auth_unknown_mechanism_is_refused_rfc5034_s4():
    """RFC 5034 s4: "If the requested authentication mechanism is not supported, the server
    rejects the AUTH command with an -ERR reply." """
    conn = fresh()
    exchange = talk(conn, b"AUTH CRAM-MD5\r\nAUTH cram-md5 AAAA\r\n")
    assert exchange.output == R.unsupported_mechanism("CRAM-MD5") * 2
    assert exchange.events == []
    assert conn.state is State.AUTHORIZATION


def test_auth_without_initial_response_starts_with_none_rfc5034_s4():
    """RFC 5034 s4: "If the initial response argument is omitted and the chosen mechanism
    requires an initial client response, the server MUST proceed by issuing an empty
    challenge". The mechanism learns that nothing was sent (None, not b"")."""
    conn = fresh()
    exchange = talk(conn, b"AUTH PLAIN\r\n")
    assert exchange.output == b""
    assert exchange.events == [SaslStart("PLAIN", None)]
    assert conn.state is State.SASL


def test_auth_with_equals_is_an_empty_initial_response_rfc5034_s4():
    """RFC 5034 s4: "If the client needs to send a zero-length initial response, it MUST
    transmit the response as a single equals sign ("=")." """
    conn = fresh()
    assert talk(conn, b"AUTH GSSAPI =\r\n").events == [SaslStart("GSSAPI", b"")]


def test_auth_with_initial_response_decodes_it_rfc5034_s4():
    """RFC 5034 s4: "If present, this response MUST be encoded as Base64"."""
    conn = fresh()
    assert talk(conn, b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n").events == [
        SaslStart("PLAIN", b"\0alice\0secret")
    ]


@pytest.mark.parametrize(
    "initial",
    [b"=AAA", b"AAA=BBB", b"AB!C", b"AB-_", b"A", b"AA", b"QU=J", b"AA==AA=="],
)
def test_invalid_base64_initial_response_is_refused_rfc5034_s4(initial):
    """RFC 5034 s4: "servers and clients MUST reject (and not ignore) any character not
    explicitly allowed by the Base64 alphabet, and MUST reject any sequence of Base64
    characters that contains the pad character ('=') anywhere other than the end of the
    string (e.g., "=AAA" and "AAA=BBB" are not allowed)." """
    conn = fresh()
    exchange = talk(conn, b"AUTH PLAIN " + initial + b"\r\n")
    assert exchange.output == R.ERR_INITIAL_NOT_BASE64
    assert exchange.events == []
    assert conn.state is State.AUTHORIZATION


def test_empty_challenge_is_plus_space_exactly_rfc5034_s4():
    """RFC 5034 s4: "In POP3, an empty server challenge is defined as a line with only a
    "+", followed by a single space. It MUST NOT contain any other data." (fetchmail needs
    the space: DESIGN E0002)."""
    conn = fresh()
    talk(conn, b"AUTH NTLM\r\n")
    conn.sasl_challenge(b"")
    assert sent(conn) == b"+ \r\n"


def test_challenge_is_plus_space_base64_rfc5034_s4():
    """RFC 5034 s4: "A server challenge is sent as a line consisting of a "+" character,
    followed by a single space and a string encoded using Base64 ... This line MUST NOT
    contain any text other than the BASE64-encoded challenge." """
    conn = in_sasl("NTLM")
    challenge = bytes(range(256)) * 4
    assert talk(conn, b"TlRMTVNTUAABAAAA\r\n").events == [
        SaslContinue(base64.b64decode(b"TlRMTVNTUAABAAAA"))
    ]
    conn.sasl_challenge(challenge)
    assert sent(conn) == R.challenge(base64.b64encode(challenge))
    assert conn.state is State.SASL


def test_response_line_may_exceed_max_command_size_rfc5034_s4():
    """RFC 5034 s4: "these BASE64 strings may be of arbitrary length ... This requirement is
    independent of any line-length limitations the client or server may have in other
    parts of its protocol implementation." (DESIGN E0002: "SASL continuation lines are not
    bound by the max command size")."""
    conn = in_sasl()
    token = bytes(range(256)) * 150  # 38400 octets; 51200 in base64
    exchange = talk(conn, base64.b64encode(token) + b"\r\n")
    assert exchange.events == [SaslContinue(token)]
    assert exchange.output == b""


def test_response_line_up_to_sasl_line_max_is_accepted_rfc5034_s4():
    """RFC 5034 s4: "Clients and servers MUST be able to handle the largest encoded
    challenges and responses generated by the authentication mechanisms they support." A
    line of exactly ``sasl_line_max`` octets incl. CRLF is taken, one more is refused."""
    settings = ConnectionSettings(tls_active=True, sasl_mechanisms=MECHANISMS, sasl_line_max=1026)
    conn = in_sasl(settings=settings)
    assert talk(conn, b"A" * 1024 + b"\r\n").events == [SaslContinue(bytes(768))]
    conn.sasl_challenge(b"")
    conn.data_to_send()
    exchange = talk(conn, b"A" * 1028 + b"\r\nNOOP\r\n")
    assert exchange.events == [SaslCancelled()]
    assert exchange.output == R.line_too_long(1026)
    assert conn.state is State.AUTHORIZATION
    assert talk(conn).output == b""
    assert conn.next_event() is Signal.NEED_DATA
    assert sent(conn) == R.not_before_login("NOOP")


def test_over_long_response_in_pieces_is_discarded_up_to_its_end_rfc5034_s4():
    """RFC 5034 s4: "If the server cannot Base64 decode a client response, it MUST reject
    the AUTH command with an -ERR reply." A response over ``sasl_line_max`` ends the
    exchange once; the rest of that line is not read as commands."""
    settings = ConnectionSettings(tls_active=True, sasl_mechanisms=MECHANISMS, sasl_line_max=100)
    conn = in_sasl(settings=settings)
    exchange = talk(conn, b"A" * 150, b"QUIT" * 100, b"\r\nCAPA\r\n", respond=Responder())
    assert exchange.events == [SaslCancelled()]
    assert exchange.output.startswith(R.line_too_long(100) + R.OK_CAPA)


def test_over_long_response_that_exhausts_bad_commands_stays_closed_c0005():
    """C0005: "After returning a negative status indicator, Microsoft Exchange can close
    the connection." When an over-long SASL response is the last bad command allowed,
    the connection is closed and stays closed: the cancelled exchange must not reopen
    AUTHORIZATION."""
    settings = ConnectionSettings(
        tls_active=True, sasl_mechanisms=MECHANISMS, sasl_line_max=100, max_bad_commands=1
    )
    conn = in_sasl(settings=settings)
    exchange = talk(conn, b"A" * 200 + b"\r\nUSER alice\r\n", respond=Responder())
    assert exchange.output == R.line_too_long(100) + R.ERR_TOO_MANY_BAD_COMMANDS
    assert exchange.events == [SaslCancelled(), Signal.CLOSED]
    assert conn.state is State.CLOSED
    assert conn.next_event() is Signal.CLOSED


def test_star_cancels_the_exchange_rfc5034_s4():
    """RFC 5034 s4: "If the client wishes to cancel the authentication exchange, it issues
    a line with a single "*". If the server receives such a response, it MUST reject the
    AUTH command by sending an -ERR reply." """
    conn = in_sasl()
    exchange = talk(conn, b"*\r\n")
    assert exchange.output == R.ERR_SASL_CANCELLED
    assert exchange.events == [SaslCancelled()]
    assert conn.state is State.AUTHORIZATION


def test_star_cancel_does_not_count_as_a_failed_login_c0005():
    """RFC 5034 s4: "*" cancels; C0005's close-after-failures is about failed logins, and a
    cancelled exchange is not one."""
    settings = ConnectionSettings(tls_active=True, sasl_mechanisms=MECHANISMS, max_auth_failures=1)
    conn = in_sasl(settings=settings)
    talk(conn, b"*\r\n")
    assert talk(conn, b"AUTH GSSAPI\r\n").events == [SaslStart("GSSAPI", None)]


@pytest.mark.parametrize("response", [b"=AAA", b"AAA=BBB", b"not base64!", b"\xff\xfe", b"* "])
def test_bad_base64_response_cancels_with_err_rfc5034_s4(response):
    """RFC 5034 s4: "If the server cannot Base64 decode a client response, it MUST reject
    the AUTH command with an -ERR reply." """
    conn = in_sasl()
    exchange = talk(conn, response + b"\r\n")
    assert exchange.output == R.ERR_SASL_NOT_BASE64
    assert exchange.events == [SaslCancelled()]
    assert conn.state is State.AUTHORIZATION


@pytest.mark.parametrize(("response", "decoded"), [(b"", b""), (b"=", b""), (b"AA==", b"\0")])
def test_empty_and_padded_responses_are_valid_rfc5034_s4(response, decoded):
    """RFC 5034 s4: "A client response consists of a line containing a string encoded as
    Base64." The empty string is the Base64 of an empty response; "=" (the initial
    response's spelling of empty) is taken the same way."""
    conn = in_sasl()
    assert talk(conn, response + b"\r\n").events == [SaslContinue(decoded)]


def test_command_keywords_in_sasl_state_are_responses_not_commands_rfc5034_s4():
    """RFC 5034 s4: "A client response consists of a line containing a string encoded as
    Base64." During the exchange "QUIT" is a (valid Base64) response, not a command."""
    conn = in_sasl()
    assert talk(conn, b"QUIT\r\n").events == [SaslContinue(base64.b64decode(b"QUIT"))]
    assert conn.state is State.SASL


def test_successful_exchange_enters_transaction_rfc5034_s4():
    """RFC 5034 s4: "Should the client successfully complete the exchange, the server
    issues a +OK reply. Additionally, upon success, the POP3 session enters the
    TRANSACTION state." """
    info = message_info(1, 42)
    conn = fresh()
    responder = Responder(messages=[(info, b"x" * 40 + b"\r\n")])
    exchange = talk(conn, b"AUTH PLAIN\r\n", PLAIN_RESPONSE + b"\r\nSTAT\r\n", respond=responder)
    assert exchange.output == R.EMPTY_CHALLENGE + R.logged_in(1, 42) + R.stat(1, 42)
    assert conn.state is State.TRANSACTION
    assert conn.user == "alice"


def test_initial_response_login_in_one_line_rfc5034_s4():
    """RFC 5034 s4: "The optional initial-response argument to the AUTH command is used to
    save a round trip"."""
    conn = fresh()
    exchange = talk(conn, b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n", respond=Responder())
    assert exchange.output == R.logged_in(0, 0)


def test_failed_exchange_is_err_and_back_to_authorization_rfc5034_s4():
    """RFC 5034 s4: "If the server is unable to authenticate the client, it MUST reject the
    AUTH command with an -ERR reply." """
    conn = in_sasl("PLAIN")
    talk(conn, base64.b64encode(b"\0alice\0wrong") + b"\r\n")
    conn.login_failed(Err("authentication failed"))
    assert sent(conn) == b"-ERR authentication failed\r\n"
    assert conn.state is State.AUTHORIZATION


def test_store_failure_during_exchange_is_sys_temp_rfc3206():
    """RFC 3206 SYS/TEMP: "a problem which is likely temporary in nature"; an exchange the
    store could not finish ends with that code and leaves AUTHORIZATION usable."""
    conn = in_sasl("PLAIN")
    talk(conn, PLAIN_RESPONSE + b"\r\n")
    conn.store_failed()
    assert sent(conn) == R.ERR_STORE_UNAVAILABLE
    assert conn.state is State.AUTHORIZATION


def test_auth_forgets_a_pending_user_rfc1939_s7():
    """RFC 1939 s7: PASS "may only be given in the AUTHORIZATION state immediately after a
    successful USER command". An AUTH in between breaks the pair."""
    conn = fresh()
    talk(conn, b"USER alice\r\nAUTH GSSAPI\r\n")
    conn.login_failed(Err("no"))
    conn.data_to_send()
    assert talk(conn, b"PASS secret\r\n").output == R.ERR_PASS_WITHOUT_USER


def test_auth_after_successful_login_is_refused_rfc5034_s4():
    """RFC 5034 s4: "After a successful AUTH command completes, a server MUST reject any
    further AUTH commands with an -ERR reply." """
    conn = fresh()
    talk(conn, b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n", respond=Responder())
    assert talk(conn, b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n").output == (
        R.only_before_login("AUTH")
    )


def test_plaintext_mechanism_refused_without_tls_names_the_reason_v0010():
    """V0010: "Microsoft Exchange returns a negative response if the mailbox exists, but the
    server does not permit plaintext password authentication." """
    conn = fresh(ConnectionSettings(sasl_mechanisms=MECHANISMS))
    exchange = talk(conn, b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert exchange.output == R.mechanism_needs_tls("PLAIN")
    assert exchange.events == []
