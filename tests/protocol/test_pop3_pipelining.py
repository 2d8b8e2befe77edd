"""PIPELINING (RFC 2449 s6.6): commands sent together are answered in turn."""

from __future__ import annotations

import base64

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import (
    ConnectionSettings,
    PasswordLogin,
    Pop3Connection,
    Retrieve,
    SaslContinue,
    SaslStart,
    Signal,
    Update,
)
from popbox.protocol.testing import Responder, logged_in, message_info, talk

WIRE_1 = b"Subject: 1\r\n\r\nbody one\r\n"
WIRE_2 = b"Subject: 2\r\n\r\n.hidden\r\n"
INFO_1 = message_info(1, len(WIRE_1))
INFO_2 = message_info(2, len(WIRE_2) - 1)
SETTINGS = ConnectionSettings(
    login_type="plaintext_login", sasl_mechanisms=(("PLAIN", True),), max_bad_commands=100
)


def responder() -> Responder:
    return Responder(messages=[(INFO_1, WIRE_1), (INFO_2, WIRE_2)])


def test_capa_announces_pipelining_rfc2449_s6_6():
    """RFC 2449 s6.6: "The PIPELINING capability indicates the server is capable of
    accepting multiple commands at a time"."""
    conn = Pop3Connection(SETTINGS)
    assert b"\r\nPIPELINING\r\n" in talk(conn, b"CAPA\r\n").output


def test_whole_session_in_one_segment_is_answered_in_order_rfc2449_s6_6():
    """RFC 2449 s6.6: "If a server supports PIPELINING, it MUST process each command in
    turn. If a client uses PIPELINING, it MUST keep track of which commands it has
    outstanding, and match server responses to commands in order." """
    conn = Pop3Connection(SETTINGS)
    conn.data_to_send()
    respond = responder()
    script = (
        b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\n"
        b"TOP 2 0\r\nRETR 2\r\nDELE 1\r\nLIST 1\r\nNOOP\r\nBOGUS\r\nQUIT\r\nNOOP\r\n"
    )
    exchange = talk(conn, script, respond=respond)
    capa_end = exchange.output.index(b"\r\n.\r\n") + 5
    assert exchange.output[capa_end:] == (
        R.OK_SEND_PASS
        + R.logged_in(2, INFO_1.size + INFO_2.size)
        + R.stat(2, INFO_1.size + INFO_2.size)
        + R.multiline(R.OK_SCAN_LISTING, b"1 %d" % INFO_1.size, b"2 %d" % INFO_2.size)
        + R.unique_id(2, "2")
        + R.octets(INFO_1.size)
        + WIRE_1
        + R.TERMINATOR
        + R.OK_TOP
        + b"Subject: 2\r\n\r\n"
        + R.TERMINATOR
        + R.octets(INFO_2.size)
        + WIRE_2
        + R.TERMINATOR
        + R.deleted(1)
        + R.marked_deleted(1)
        + R.OK
        + R.ERR_UNKNOWN_COMMAND
        + R.signing_off(1)
    )
    assert exchange.events == [
        PasswordLogin("alice", "secret"),
        Retrieve(1, INFO_1, None),
        Retrieve(2, INFO_2, 0),
        Retrieve(2, INFO_2, None),
        Update(deleted=(1,), retrieved=(2,)),
        Signal.CLOSED,
    ]


def test_commands_after_an_event_wait_for_its_answer_rfc2449_s6_6():
    """RFC 2449 s6.6: "it MUST process each command in turn." A STAT pipelined behind RETR
    is not answered before the message has been sent."""
    conn = logged_in([INFO_1], ConnectionSettings(tls_active=True))
    exchange = talk(conn, b"RETR 1\r\nSTAT\r\nNOOP\r\n")
    assert exchange.events == [Retrieve(1, INFO_1, None)]
    assert exchange.output == b""
    conn.send_message(WIRE_1)
    assert conn.next_event() is Signal.NEED_DATA
    assert b"".join(conn.data_to_send()) == (
        R.octets(INFO_1.size) + WIRE_1 + R.TERMINATOR + R.stat(1, INFO_1.size) + R.OK
    )


def test_sasl_exchange_pipelined_with_commands_rfc2449_s6_6():
    """RFC 2449 s6.6: responses match commands in order; RFC 5034 s4: a response line
    follows its challenge. An AUTH, its response and the next command sent together are
    each handled in their own state."""
    conn = Pop3Connection(SETTINGS)
    conn.data_to_send()
    response = base64.b64encode(b"\0alice\0secret")
    exchange = talk(conn, b"AUTH PLAIN\r\n" + response + b"\r\nSTAT\r\n", respond=responder())
    assert exchange.events == [SaslStart("PLAIN", None), SaslContinue(b"\0alice\0secret")]
    total = INFO_1.size + INFO_2.size
    assert exchange.output == R.EMPTY_CHALLENGE + R.logged_in(2, total) + R.stat(2, total)


def test_hundreds_of_pipelined_commands_rfc2449_s6_6():
    """RFC 2449 s6.6: "the client does not have to wait for the response to a command
    before issuing a subsequent command." """
    conn = logged_in([INFO_1], ConnectionSettings(tls_active=True))
    exchange = talk(conn, b"NOOP\r\nSTAT\n" * 500)
    assert exchange.output == (R.OK + R.stat(1, INFO_1.size)) * 500
