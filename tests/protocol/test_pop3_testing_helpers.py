"""popbox.protocol.testing: the shipped talk() runner and Responder behave as documented."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import (
    ConnectionSettings,
    PasswordLogin,
    Pop3Connection,
    Retrieve,
    SaslStart,
    Signal,
)
from popbox.protocol.testing import Responder, logged_in, message_info, talk

INFO = message_info(7, 12, stored_size=99, legacy_uidl="old-7", received_at=5.0)


def test_message_info_defaults_stored_size_to_size_c0009():
    """C0009: imported messages keep their unique-id ("their unique-ids remain in the
    Exchange 2003 format"); the fixture carries it, and the stored size defaults to the
    exact size."""
    assert (INFO.uid, INFO.size, INFO.stored_size, INFO.uidl, INFO.received_at) == (
        7,
        12,
        99,
        "old-7",
        5.0,
    )
    assert message_info(3, 40).stored_size == 40
    assert message_info(3, 40).uidl == "3"


def test_talk_without_responder_stops_at_first_event_and_buffers_the_rest_rfc2449_s6_6():
    """RFC 2449 s6.6: "it MUST process each command in turn". talk() hands back the first
    event unanswered; the chunks after it wait in the buffer for the next call."""
    conn = Pop3Connection(ConnectionSettings(tls_active=True))
    exchange = talk(conn, b"USER a\r\nPASS b\r\n", b"CAPA\r\n")
    assert exchange.output == R.GREETING + R.OK_SEND_PASS
    assert exchange.events == [PasswordLogin("a", "b")]
    conn.login_succeeded("a", [])
    assert conn.next_event() is Signal.NEED_DATA
    assert b"".join(conn.data_to_send()).startswith(R.logged_in(0, 0) + R.OK_CAPA)


def test_responder_answers_missing_message_as_gone_c0004():
    """C0004: "If a message is deleted while the POP session is opened, the RETR and TOP
    commands will return an error." The Responder plays a store that lost the message."""
    conn = logged_in([INFO])
    exchange = talk(conn, b"RETR 1\r\n", respond=Responder())
    assert exchange.events == [Retrieve(1, INFO, None)]
    assert exchange.output == R.message_gone(1)


def test_responder_fails_unknown_mechanisms_rfc5034_s4():
    """RFC 5034 s4: "If the server is unable to authenticate the client, it MUST reject the
    AUTH command with an -ERR reply." """
    conn = Pop3Connection(ConnectionSettings(sasl_mechanisms=(("GSSAPI", False),)))
    exchange = talk(conn, b"AUTH GSSAPI\r\n", respond=Responder())
    assert exchange.events == [SaslStart("GSSAPI", None)]
    assert exchange.output == R.GREETING + R.ERR_AUTH_FAILED


def test_logged_in_refuses_settings_without_user_pass_v0010():
    """V0010: USER/PASS is refused without TLS under secure_login, so the helper cannot log
    in that way and says so instead of returning a connection in the wrong state."""
    with pytest.raises(TypeError, match="refuse USER/PASS"):
        logged_in([], ConnectionSettings())
