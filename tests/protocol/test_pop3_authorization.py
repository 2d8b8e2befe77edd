"""AUTHORIZATION: USER/PASS (V0008-V0011), login_type (V0010), CAPA (2.2.13, RFC 2449 s5)."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import (
    ConnectionSettings,
    PasswordLogin,
    Pop3Connection,
    SaslStart,
    Signal,
    StartTls,
)
from popbox.protocol.replies import Err, RespCode
from popbox.protocol.states import State
from popbox.protocol.testing import Responder, logged_in, message_info, talk

MECHANISMS = (("PLAIN", True), ("GSSAPI", False), ("LOGIN", True), ("SCRAM-SHA-256", False))
LOGIN_TYPES = ["plaintext_login", "plaintext_authentication", "secure_login"]


def fresh(**settings: object) -> Pop3Connection:
    conn = Pop3Connection(ConnectionSettings(**settings))  # type: ignore[arg-type]
    conn.data_to_send()
    return conn


def sent(conn: Pop3Connection) -> bytes:
    return b"".join(conn.data_to_send())


def capa_lines(conn: Pop3Connection) -> list[bytes]:
    output = talk(conn, b"CAPA\r\n").output
    assert output.startswith(R.OK_CAPA)
    assert output.endswith(b"\r\n.\r\n")
    return output[len(R.OK_CAPA) : -len(R.TERMINATOR)].split(b"\r\n")[:-1]


# -- USER / PASS ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "nobody-at-all", "x" * 255, "j\u00fcrgen", "root"])
def test_user_always_answers_the_same_ok_v0008_v0009(name):
    """V0009: "As a security precaution, Microsoft Exchange returns a positive status
    regardless of whether the specified mailbox exists." The reply bytes are identical
    for every name, and no event reaches the store before PASS (V0008: "does not verify
    whether the specified mailbox exists until the client issues the PASS command")."""
    conn = fresh(tls_active=True)
    exchange = talk(conn, f"USER {name}\r\n".encode())
    assert exchange.output == R.OK_SEND_PASS
    assert exchange.events == []


def test_pass_after_user_raises_login_event_with_both_v0008():
    """RFC 1939 s7: "the POP3 server uses the argument pair from the USER and PASS commands
    to determine if the client should be given access to the appropriate maildrop." """
    conn = fresh(tls_active=True)
    exchange = talk(conn, b"USER alice\r\nPASS  my  secret \r\n")
    assert exchange.events == [PasswordLogin("alice", "my  secret ")]


def test_last_user_wins_before_pass_rfc1939_s7():
    """RFC 1939 s7: USER "may only be given in the AUTHORIZATION state after the POP3
    greeting or after an unsuccessful USER or PASS command"; the name PASS pairs with is
    the one given last."""
    conn = fresh(tls_active=True)
    assert talk(conn, b"USER a\r\nUSER b\r\nPASS p\r\n").events == [PasswordLogin("b", "p")]


def test_pass_without_user_is_refused_rfc1939_s7():
    """RFC 1939 s7: PASS "may only be given in the AUTHORIZATION state immediately after a
    successful USER command"."""
    conn = fresh(tls_active=True)
    exchange = talk(conn, b"PASS secret\r\n")
    assert exchange.output == R.ERR_PASS_WITHOUT_USER
    assert exchange.events == []


def test_failed_pass_forgets_the_user_rfc1939_s7():
    """RFC 1939 s7: PASS "may only be given ... immediately after a successful USER
    command"; after a failed PASS a new USER is needed."""
    conn = fresh(tls_active=True)
    respond = Responder()
    exchange = talk(conn, b"USER alice\r\nPASS wrong\r\nPASS secret\r\n", respond=respond)
    assert exchange.output == R.OK_SEND_PASS + R.ERR_AUTH_FAILED + R.ERR_PASS_WITHOUT_USER
    assert conn.state is State.AUTHORIZATION


def test_successful_login_enters_transaction_with_snapshot_rfc1939_s4():
    """RFC 1939 s4: "the POP3 server then acquires an exclusive-access lock on the maildrop
    ... the POP3 server responds with a positive status indicator. The POP3 session now
    enters the TRANSACTION state." C0004: the server "makes a snapshot"."""
    infos = [message_info(1, 100), message_info(2, 20)]
    conn = fresh(tls_active=True)
    assert talk(conn, b"USER alice\r\nPASS secret\r\n").events == [PasswordLogin("alice", "secret")]
    conn.login_succeeded("alice", infos)
    assert sent(conn) == R.logged_in(2, 120)
    assert conn.state is State.TRANSACTION
    assert conn.user == "alice"


def test_login_failed_sends_the_given_reply_with_resp_code_v0001():
    """V0001: "Microsoft Exchange includes informational text after some negative responses
    to assist the client in determining the cause of the negative response." The reply
    chosen by the authenticator goes out as given, with its RFC 3206 code."""
    conn = fresh(tls_active=True)
    talk(conn, b"USER alice\r\nPASS x\r\n")
    conn.login_failed(Err("wait a little", RespCode.LOGIN_DELAY))
    assert sent(conn) == b"-ERR [LOGIN-DELAY] wait a little\r\n"
    assert conn.state is State.AUTHORIZATION


def test_login_store_failure_is_sys_temp_and_back_to_authorization_v0001():
    """V0001 / RFC 3206: "SYS/TEMP ... a passing problem"; the client may try again on the
    same connection."""
    conn = fresh(tls_active=True)
    talk(conn, b"USER alice\r\nPASS x\r\n")
    conn.store_failed()
    assert sent(conn) == R.ERR_STORE_UNAVAILABLE
    assert conn.state is State.AUTHORIZATION
    assert talk(conn, b"PASS x\r\n").output == R.ERR_PASS_WITHOUT_USER


def test_close_after_max_auth_failures_c0005():
    """C0005: "After returning a negative status indicator, Microsoft Exchange can close
    the connection." After ``max_auth_failures`` failed logins it does, and commands
    pipelined after the last failure are not run."""
    conn = fresh(tls_active=True, max_auth_failures=2)
    exchange = talk(
        conn,
        b"USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\nUSER alice\r\n",
        respond=Responder(),
    )
    assert exchange.output == (
        R.OK_SEND_PASS
        + R.ERR_AUTH_FAILED
        + R.OK_SEND_PASS
        + R.ERR_AUTH_FAILED
        + R.ERR_TOO_MANY_FAILED_LOGINS
    )
    assert exchange.events == [
        PasswordLogin("alice", "a"),
        PasswordLogin("alice", "b"),
        Signal.CLOSED,
    ]


# -- V0010: login_type ----------------------------------------------------------------------


@pytest.mark.parametrize("login_type", LOGIN_TYPES)
@pytest.mark.parametrize("tls_active", [False, True])
def test_user_follows_login_type_v0010(login_type, tls_active):
    """V0010: "Microsoft Exchange returns a negative response if the mailbox exists, but the
    server does not permit plaintext password authentication." USER/PASS is allowed only
    under plaintext_login or over TLS, and the refusal does not depend on the name."""
    conn = fresh(login_type=login_type, tls_active=tls_active)
    allowed = tls_active or login_type == "plaintext_login"
    exchange = talk(conn, b"USER alice\r\nUSER nobody\r\nPASS secret\r\n")
    if allowed:
        assert exchange.output == R.OK_SEND_PASS * 2
        assert exchange.events == [PasswordLogin("nobody", "secret")]
    else:
        assert exchange.output == R.ERR_USER_NEEDS_TLS * 2 + R.ERR_PASS_WITHOUT_USER
        assert exchange.events == []


@pytest.mark.parametrize("login_type", LOGIN_TYPES)
@pytest.mark.parametrize("tls_active", [False, True])
def test_sasl_mechanisms_follow_login_type_v0010(login_type, tls_active):
    """V0010 (DESIGN): "Plaintext logins (USER/PASS, AUTH PLAIN/LOGIN) follow the login_type
    setting ... Refused ones get -ERR". Mechanisms that do not send the password itself
    are allowed everywhere."""
    conn = fresh(login_type=login_type, tls_active=tls_active, sasl_mechanisms=MECHANISMS)
    plaintext = tls_active or login_type != "secure_login"
    exchange = talk(conn, b"AUTH GSSAPI\r\n")
    assert exchange.events == [SaslStart("GSSAPI", None)]
    conn.login_failed(Err("no"))
    conn.data_to_send()
    exchange = talk(conn, b"AUTH PLAIN\r\n")
    if plaintext:
        assert exchange.events == [SaslStart("PLAIN", None)]
    else:
        assert exchange.output == R.mechanism_needs_tls("PLAIN")
        assert exchange.events == []


@pytest.mark.parametrize("login_type", LOGIN_TYPES)
@pytest.mark.parametrize("tls_active", [False, True])
def test_capa_advertises_only_what_is_allowed_v0010_2_2_13(login_type, tls_active):
    """V0010 (DESIGN): "CAPA does not advertise what is refused." 2.2.13: "CAPA lists ...
    USER (when allowed), SASL with the mechanisms allowed on this connection"."""
    conn = fresh(login_type=login_type, tls_active=tls_active, sasl_mechanisms=MECHANISMS)
    lines = capa_lines(conn)
    user_ok = tls_active or login_type == "plaintext_login"
    sasl_plain_ok = tls_active or login_type != "secure_login"
    assert (b"USER" in lines) is user_ok
    expected_sasl = (
        b"SASL PLAIN GSSAPI LOGIN SCRAM-SHA-256"
        if sasl_plain_ok
        else (b"SASL GSSAPI SCRAM-SHA-256")
    )
    assert [line for line in lines if line.startswith(b"SASL")] == [expected_sasl]


def test_capa_omits_sasl_when_no_mechanism_is_allowed_rfc2449_s6_3():
    """RFC 2449 s6.3: "The SASL capability indicates that the AUTH command is available";
    with no mechanism allowed there is nothing to announce."""
    conn = fresh(sasl_mechanisms=(("PLAIN", True),))
    assert not [line for line in capa_lines(conn) if line.startswith(b"SASL")]
    assert not [line for line in capa_lines(fresh()) if line.startswith(b"SASL")]


# -- CAPA content ---------------------------------------------------------------------------


def test_capa_lists_every_2_2_13_capability_in_order_rfc2449_s5():
    """RFC 2449 s5: "An +OK response is followed by a list of capabilities, one per line
    ... The capability list is terminated by a line containing a termination octet (".")
    and a CRLF pair." 2.2.13: "CAPA lists: TOP, UIDL, USER (when allowed), SASL ...,
    RESP-CODES, AUTH-RESP-CODE, PIPELINING, EXPIRE, LOGIN-DELAY, IMPLEMENTATION, STLS
    (before TLS only)." """
    conn = fresh(login_type="plaintext_login", sasl_mechanisms=(("PLAIN", True),))
    assert talk(conn, b"CAPA\r\n").output == R.multiline(
        R.OK_CAPA,
        b"TOP",
        b"UIDL",
        b"USER",
        b"SASL PLAIN",
        b"RESP-CODES",
        b"AUTH-RESP-CODE",
        b"PIPELINING",
        b"EXPIRE NEVER",
        b"LOGIN-DELAY 0",
        b"UTF8 USER",
        b"LANG",
        b"STLS",
        b"IMPLEMENTATION popbox",
    )


def test_capa_after_login_keeps_user_and_sasl_drops_stls_rfc2449_s5():
    """RFC 2449 s5: "Capabilities available in the AUTHORIZATION state MUST be announced in
    both states." RFC 5034 s3: "implementations MUST continue to include the SASL
    capability even after a successful AUTH command has been completed". RFC 2595 s4: STLS
    is "Only permitted in AUTHORIZATION state"."""
    settings = ConnectionSettings(login_type="plaintext_login", sasl_mechanisms=MECHANISMS)
    before = capa_lines(fresh(login_type="plaintext_login", sasl_mechanisms=MECHANISMS))
    after = capa_lines(logged_in([], settings))
    assert b"STLS" in before
    assert after == [line for line in before if line != b"STLS"]
    assert b"USER" in after
    assert b"SASL PLAIN GSSAPI LOGIN SCRAM-SHA-256" in after


def test_capa_is_allowed_in_both_states_and_changes_no_state_rfc2449_s5():
    """RFC 2449 s5: CAPA "is available in both the AUTHORIZATION and TRANSACTION states." """
    conn = fresh(tls_active=True)
    talk(conn, b"USER alice\r\nCAPA\r\n")
    assert talk(conn, b"PASS x\r\n").events == [PasswordLogin("alice", "x")]


@pytest.mark.parametrize("expire", ["NEVER", "0", "30", "5 USER"])
def test_expire_capability_carries_the_setting_rfc2449_s6_7(expire):
    """RFC 2449 s6.7: "The argument to the EXPIRE capability indicates the minimum server
    retention period, in days, for messages on the server." (e.g. "EXPIRE 5 USER",
    "EXPIRE NEVER", "EXPIRE 0"); DESIGN E0005: "EXPIRE capability advertises it"."""
    conn = fresh(expire=expire)
    assert f"EXPIRE {expire}".encode() in capa_lines(conn)


def test_implementation_capability_carries_the_setting_rfc2449_s6_9():
    """RFC 2449 s6.9: IMPLEMENTATION, "string giving server implementation information"."""
    conn = fresh(implementation="popbox 0.1.0 (test)")
    assert capa_lines(conn)[-1] == b"IMPLEMENTATION popbox 0.1.0 (test)"


def test_stls_listed_only_before_tls_and_only_when_available_rfc2595_s4():
    """RFC 2595 s4: "STLS ... Only permitted in AUTHORIZATION state"; 2.2.13: "STLS (before
    TLS only)". A port without a certificate does not offer it."""
    assert b"STLS" in capa_lines(fresh())
    assert b"STLS" not in capa_lines(fresh(stls_available=False))
    assert b"STLS" not in capa_lines(fresh(tls_active=True))


def test_capa_after_stls_drops_stls_and_adds_plaintext_logins_rfc2595_s4():
    """RFC 2595 s4: "The server MAY advertise different capabilities after STLS." Once TLS
    is up, STLS is gone and USER/PLAIN appear under secure_login (V0010)."""
    conn = fresh(sasl_mechanisms=(("PLAIN", True),))
    before = capa_lines(conn)
    talk(conn, b"STLS\r\n")
    conn.tls_established()
    assert conn.tls_active
    after = capa_lines(conn)
    assert b"STLS" in before
    assert b"USER" not in before
    assert b"STLS" not in after
    assert b"USER" in after
    assert b"SASL PLAIN" in after


# -- STLS -----------------------------------------------------------------------------------


def test_stls_answers_ok_then_waits_for_the_handshake_rfc2595_s4():
    """RFC 2595 s4: "A TLS negotiation begins immediately after the CRLF at the end of the
    +OK response from the server." """
    conn = fresh()
    exchange = talk(conn, b"STLS\r\n")
    assert exchange.output == R.OK_BEGIN_TLS
    assert exchange.events == [StartTls()]
    conn.tls_established()
    assert sent(conn) == b""
    assert conn.state is State.AUTHORIZATION


@pytest.mark.parametrize("settings", [{"tls_active": True}, {}])
def test_stls_when_tls_is_active_is_refused_rfc2595_s4(settings):
    """RFC 2595 s4: "A -ERR response MAY result if a security layer is already active." """
    conn = fresh(**settings)
    if not settings:
        talk(conn, b"STLS\r\n")
        conn.tls_established()
    exchange = talk(conn, b"STLS\r\n")
    assert exchange.output == R.ERR_ALREADY_TLS
    assert exchange.events == []


def test_stls_without_certificate_is_refused_rfc2595_s4():
    """RFC 2595 s4: STLS "Possible Responses: +OK -ERR"; a port with nothing to upgrade to
    says so."""
    conn = fresh(stls_available=False)
    assert talk(conn, b"STLS\r\n").output == R.ERR_NO_TLS_HERE


def test_tls_established_forgets_pending_user_rfc2595_s4():
    """RFC 2595 s4: "Once TLS has been started, the client MUST discard cached information
    about server capabilities"; the server likewise forgets the plaintext USER."""
    conn = fresh(login_type="plaintext_login")
    talk(conn, b"USER alice\r\nSTLS\r\n")
    conn.tls_established()
    assert talk(conn, b"PASS secret\r\n").output == R.ERR_PASS_WITHOUT_USER
