"""Session states (RFC 1939 s3-6, C0002, C0003), closing, timers and the I/O contract."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.commands import (
    Auth,
    Capa,
    Dele,
    Lang,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    parse_command,
)
from popbox.protocol.connection import (
    CommandRecord,
    ConnectionSettings,
    PasswordLogin,
    Pop3Connection,
    Retrieve,
    SaslStart,
    Signal,
    StartTls,
    Update,
)
from popbox.protocol.replies import Err
from popbox.protocol.states import ALLOWED, State
from popbox.protocol.testing import Responder, logged_in, message_info, talk

TLS = ConnectionSettings(tls_active=True, sasl_mechanisms=(("PLAIN", True),))
INFO = message_info(1, 10)
WIRE = b"Subject: a\r\n\r\nbody\r\n"


def fresh(settings: ConnectionSettings = TLS) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


def sent(conn: Pop3Connection) -> bytes:
    return b"".join(conn.data_to_send())


def test_greeting_is_a_positive_response_and_state_is_authorization_rfc1939_s4():
    """RFC 1939 s4: "Once the TCP connection has been opened by a POP3 client, the POP3
    server issues a one line greeting. This can be any positive response." """
    conn = Pop3Connection()
    assert conn.state is State.AUTHORIZATION
    assert conn.user is None
    assert talk(conn).output == R.GREETING
    assert talk(Pop3Connection(ConnectionSettings(banner="hi"))).output == b"+OK hi\r\n"


def test_allowed_table_matches_the_rfc_rfc1939_s4_c0003():
    """C0003: "The client MUST now identify and authenticate itself"; RFC 1939 s5: every
    TRANSACTION command "may only be given in the TRANSACTION state"."""
    assert ALLOWED[State.AUTHORIZATION] == {Capa, User, Pass, Auth, Stls, Quit, Lang, Utf8}
    assert not ALLOWED[State.SASL]
    assert not ALLOWED[State.UPDATE]
    assert not ALLOWED[State.CLOSED]
    assert not ALLOWED[State.TRANSACTION] & {User, Pass, Auth, Stls}


@pytest.mark.parametrize(
    ("line", "verb"),
    [
        (b"STAT", "STAT"),
        (b"LIST", "LIST"),
        (b"LIST 1", "LIST"),
        (b"UIDL", "UIDL"),
        (b"UIDL 1", "UIDL"),
        (b"RETR 1", "RETR"),
        (b"TOP 1 0", "TOP"),
        (b"DELE 1", "DELE"),
        (b"NOOP", "NOOP"),
        (b"RSET", "RSET"),
    ],
)
def test_transaction_commands_before_login_are_refused_c0002(line, verb):
    """C0002: "The client MUST identify itself to the server after it has received the
    greeting." RFC 1939 s3: "A server MUST respond to a command issued when the session is
    in an incorrect state by responding with a negative status indicator." """
    conn = fresh()
    exchange = talk(conn, line + b"\r\n")
    assert exchange.output == R.not_before_login(verb)
    assert exchange.events == []
    assert conn.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    ("line", "verb"),
    [(b"USER bob", "USER"), (b"PASS x", "PASS"), (b"AUTH PLAIN", "AUTH"), (b"STLS", "STLS")],
)
def test_authorization_commands_after_login_are_refused_rfc1939_s7(line, verb):
    """RFC 1939 s7: USER and PASS "may only be given in the AUTHORIZATION state"; RFC 5034
    s4: "After a successful AUTH command completes, a server MUST reject any further AUTH
    commands with an -ERR reply."; RFC 2595 s4: STLS is "Only permitted in AUTHORIZATION
    state." """
    conn = logged_in([INFO], TLS)
    exchange = talk(conn, line + b"\r\n")
    assert exchange.output == R.only_before_login(verb)
    assert exchange.events == []
    assert conn.state is State.TRANSACTION
    assert conn.user == "alice"


def test_bare_auth_after_login_is_refused_rfc5034_s4():
    """RFC 5034 s4: "After a successful AUTH command completes, a server MUST reject any
    further AUTH commands with an -ERR reply." """
    conn = logged_in([INFO], TLS)
    assert talk(conn, b"AUTH\r\n").output == R.only_before_login("AUTH")


def test_quit_in_authorization_does_not_enter_update_rfc1939_s6():
    """RFC 1939 s6: "if the client issues the QUIT command from the AUTHORIZATION state, the
    POP3 session terminates but does NOT enter the UPDATE state." """
    conn = fresh()
    exchange = talk(conn, b"USER alice\r\nQUIT\r\nNOOP\r\n")
    assert exchange.output == R.OK_SEND_PASS + R.OK_SIGNING_OFF
    assert exchange.events == [Signal.CLOSED]
    assert not any(isinstance(e, Update) for e in exchange.events)
    assert conn.state is State.CLOSED


def test_closed_connection_ignores_input_and_stays_closed_rfc1939_s6():
    """RFC 1939 s6: QUIT "closes the TCP connection". After it nothing more is read."""
    conn = fresh()
    talk(conn, b"QUIT\r\n")
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() is Signal.CLOSED
    assert conn.next_event() is Signal.CLOSED
    assert sent(conn) == b""
    assert len(conn._buffer._buffer) == 0


def test_quit_in_transaction_enters_update_rfc1939_s6():
    """RFC 1939 s6: "When the client issues the QUIT command from the TRANSACTION state,
    the POP3 session enters the UPDATE state." """
    conn = logged_in([INFO], TLS)
    assert talk(conn, b"QUIT\r\n").events == [Update((), ())]
    assert conn.state is State.UPDATE
    assert conn.user == "alice"
    conn.update_finished(ok=True)
    assert sent(conn) == R.signing_off(0)
    assert conn.state is State.CLOSED
    assert conn.next_event() is Signal.CLOSED


@pytest.mark.parametrize("login", [False, True])
def test_timeout_sends_one_err_and_closes_without_update_v0003(login):
    """V0003: "In the event of inactivity autologout, Microsoft Exchange sends a response
    that notifies the client that the connection is being closed, prior to closing the
    connection." RFC 1939 s3: "When the timer expires, the session does NOT enter the
    UPDATE state"."""
    conn = logged_in([INFO], TLS) if login else fresh()
    talk(conn, b"DELE 1\r\n" if login else b"USER a\r\n")
    conn.timed_out(60)
    conn.timed_out(60)
    assert sent(conn) == R.timed_out("60")
    assert conn.state is State.CLOSED
    assert conn.next_event() is Signal.CLOSED


def test_timeout_text_names_fractional_seconds_v0002():
    """V0002: "The authenticated timeout ... is set to 1,800 seconds by default." The
    notice names the timer that ran out."""
    conn = fresh()
    conn.timed_out(1800.0)
    assert sent(conn) == R.timed_out("1800")
    conn = fresh()
    conn.timed_out(0.5)
    assert sent(conn) == R.timed_out("0.5")


def test_timeout_while_an_event_is_pending_closes_without_update_v0003():
    """V0003 / RFC 1939 s6: "If a session terminates for some reason other than a
    client-issued QUIT command, the POP3 session does NOT enter the UPDATE state" even
    with a command in flight."""
    conn = logged_in([INFO], TLS)
    assert talk(conn, b"RETR 1\r\n").events == [Retrieve(1, INFO, None)]
    conn.timed_out(1800)
    assert sent(conn) == R.timed_out("1800")
    assert conn.next_event() is Signal.CLOSED


def test_shutdown_closes_with_sys_temp_and_no_update_rfc1939_s6():
    """RFC 1939 s6: "If a session terminates for some reason other than a client-issued QUIT
    command, the POP3 session does NOT enter the UPDATE state and MUST not remove any
    messages from the maildrop." RFC 3206: SYS/TEMP, try again later."""
    conn = logged_in([INFO], TLS)
    talk(conn, b"DELE 1\r\n")
    conn.shutdown()
    conn.shutdown()
    assert sent(conn) == R.ERR_SHUTDOWN
    assert conn.next_event() is Signal.CLOSED


def test_max_bad_commands_closes_the_connection_c0005():
    """C0005: "After returning a negative status indicator, Microsoft Exchange can close
    the connection." After ``max_bad_commands`` invalid commands it does."""
    conn = fresh(ConnectionSettings(max_bad_commands=3))
    exchange = talk(conn, b"XYZ\r\nSTAT\r\n\r\nNOOP\r\n")
    assert exchange.output == (
        R.ERR_UNKNOWN_COMMAND
        + R.not_before_login("STAT")
        + R.ERR_EMPTY_LINE
        + R.ERR_TOO_MANY_BAD_COMMANDS
    )
    assert exchange.events == [Signal.CLOSED]


def test_over_long_lines_count_as_bad_commands_c0005():
    """C0005: the server "can close the connection" after -ERR; over-long lines count
    toward ``max_bad_commands`` like any other invalid command."""
    conn = fresh(ConnectionSettings(max_bad_commands=2))
    exchange = talk(conn, b"x" * 600 + b"\r\n", b"y" * 600)
    assert exchange.output == R.line_too_long(512) * 2 + R.ERR_TOO_MANY_BAD_COMMANDS
    assert exchange.events == [Signal.CLOSED]


def test_next_event_while_an_event_is_unanswered_raises_rfc2449_s6_6():
    """RFC 2449 s6.6: "If a server supports PIPELINING, it MUST process each command in
    turn." Asking for the next event before answering one is an I/O-layer bug."""
    conn = logged_in([INFO], TLS)
    assert talk(conn, b"RETR 1\r\nSTAT\r\n").events == [Retrieve(1, INFO, None)]
    with pytest.raises(RuntimeError, match="answer Retrieve before asking"):
        conn.next_event()


@pytest.mark.parametrize(
    "answer",
    [
        lambda conn: conn.login_succeeded("a", []),
        lambda conn: conn.login_failed(Err("x")),
        lambda conn: conn.sasl_challenge(b""),
        lambda conn: conn.tls_established(),
        lambda conn: conn.send_message(b""),
        lambda conn: conn.message_gone(),
        lambda conn: conn.store_failed(),
        lambda conn: conn.update_finished(ok=True),
    ],
)
def test_answering_an_event_that_was_not_raised_raises_rfc2449_s6_6(answer):
    """RFC 2449 s6.6: "it MUST process each command in turn": an answer with nothing to
    answer is an I/O-layer bug, never silently accepted."""
    conn = fresh()
    with pytest.raises(RuntimeError, match="no pending"):
        answer(conn)
    assert sent(conn) == b""


def test_wrong_kind_of_answer_raises_rfc2449_s6_6():
    """RFC 2449 s6.6: "it MUST process each command in turn": a Retrieve cannot be answered
    as a login."""
    conn = logged_in([INFO], TLS)
    talk(conn, b"RETR 1\r\n")
    with pytest.raises(RuntimeError, match="no pending PasswordLogin or SaslStart"):
        conn.login_succeeded("a", [])
    with pytest.raises(RuntimeError, match="no pending Update"):
        conn.update_finished(ok=True)


def test_state_while_events_are_pending_rfc1939_s3():
    """RFC 1939 s3: the session "progresses through a number of states"; a pending login
    keeps its state (AUTHORIZATION or SASL) until it is answered, STLS stays in
    AUTHORIZATION (RFC 2595 s4: "the server remains in AUTHORIZATION state")."""
    conn = fresh()
    assert talk(conn, b"USER a\r\nPASS b\r\n").events == [PasswordLogin("a", "b")]
    assert conn.state is State.AUTHORIZATION
    assert conn.user is None
    conn.login_failed(Err("no"))
    assert talk(conn, b"AUTH PLAIN\r\n").events == [SaslStart("PLAIN", None)]
    assert conn.state is State.SASL
    conn.sasl_challenge(b"")
    assert conn.state is State.SASL
    conn = fresh(ConnectionSettings())
    assert talk(conn, b"STLS\r\n").events == [StartTls()]
    assert conn.state is State.AUTHORIZATION


def test_lines_received_counts_complete_lines_for_the_timer_v0002():
    """V0002: "The receipt of any command is sufficient to reset the inactivity timer."
    lines_received grows with each complete line, valid or not, and not with partial ones."""
    conn = fresh()
    talk(conn, b"NOOP\r\nXX\r\nUS")
    assert conn.lines_received == 2
    talk(conn, b"ER a\r\n")
    assert conn.lines_received == 3


def test_protocol_log_records_verb_and_outcome_never_arguments_v0001():
    """V0001: "Microsoft Exchange includes informational text after some negative
    responses". The protocol log keeps one record per answered command: the verb and
    whether it succeeded, never its arguments (STYLE: never log PASS or AUTH payloads)."""
    settings = ConnectionSettings(login_type="plaintext_login", sasl_mechanisms=(("PLAIN", True),))
    conn = Pop3Connection(settings)
    responder = Responder(messages=[(INFO, WIRE)])
    talk(
        conn,
        b"CAPA\r\nUSER alice\r\nPASS wrong\r\n\r\n  \r\n123\r\nAUTH PLAIN\r\n",
        b"AGFsaWNlAHNlY3JldA==\r\nRETR 1\r\nQUIT\r\n",
        respond=responder,
    )
    assert conn.take_records() == [
        CommandRecord("CAPA", ok=True),
        CommandRecord("USER", ok=True),
        CommandRecord("PASS", ok=False),
        CommandRecord("?", ok=False),
        CommandRecord("?", ok=False),
        CommandRecord("?", ok=False),
        CommandRecord("AUTH", ok=True),
        CommandRecord("SASL-RESPONSE", ok=True),
        CommandRecord("RETR", ok=True),
        CommandRecord("QUIT", ok=True),
    ]
    assert conn.take_records() == []


SAMPLE_LINES = {
    Capa: b"CAPA",
    User: b"USER alice",
    Pass: b"PASS secret",
    Auth: b"AUTH",
    Stls: b"STLS",
    Quit: b"QUIT",
    Stat: b"STAT",
    List: b"LIST",
    Retr: b"RETR 1",
    Dele: b"DELE 1",
    Noop: b"NOOP",
    Rset: b"RSET",
    Top: b"TOP 1 0",
    Uidl: b"UIDL",
    Lang: b"LANG",
    Utf8: b"UTF8",
}


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        (state, kind)
        for state in (State.AUTHORIZATION, State.TRANSACTION)
        for kind in sorted(ALLOWED[state], key=lambda k: k.__name__)
    ],
)
def test_every_allowed_command_gets_an_answer_rfc1939_s3(state, kind):
    """RFC 1939 s3: "Responses in the POP3 consist of a status indicator and a keyword
    possibly followed by additional information." Every command the state table admits
    is handled: it is answered at once or raises an event to be answered."""
    settings = ConnectionSettings()
    conn = fresh(settings) if state is State.AUTHORIZATION else logged_in([INFO], TLS)
    command = parse_command(SAMPLE_LINES[kind])
    assert type(command) is kind
    exchange = talk(conn, SAMPLE_LINES[kind] + b"\r\n")
    assert exchange.output.startswith((b"+OK", b"-ERR")) or exchange.events
