"""STLS command injection (RFC 2595 s4, RFC 8314 s4 "STARTTLS command injection").

Plaintext a client (or an attacker on the path) pipelines after STLS must never run as if
it had arrived over TLS: the framing buffer is cleared when STLS is accepted.
"""

from __future__ import annotations

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import ConnectionSettings, PasswordLogin, Pop3Connection, StartTls
from popbox.protocol.states import State
from popbox.protocol.testing import Responder, talk

SETTINGS = ConnectionSettings(login_type="plaintext_login")


def fresh(settings: ConnectionSettings = SETTINGS) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


def test_commands_pipelined_after_stls_are_discarded_rfc2595_s4():
    """RFC 2595 s4: "Once a client issues a STLS command, it MUST NOT issue further commands
    until a server response is seen and the TLS negotiation is complete." Bytes sent in the
    same segment as STLS are plaintext and are dropped, not run after the handshake."""
    conn = fresh()
    exchange = talk(conn, b"STLS\r\nUSER evil\r\nPASS injected\r\n")
    assert exchange.output == R.OK_BEGIN_TLS
    assert exchange.events == [StartTls()]
    assert len(conn._buffer._buffer) == 0
    conn.tls_established()
    exchange = talk(conn, b"PASS real\r\n")
    assert exchange.output == R.ERR_PASS_WITHOUT_USER
    assert exchange.events == []


def test_partial_line_pipelined_after_stls_is_discarded_rfc2595_s4():
    """RFC 2595 s4: "A TLS negotiation begins immediately after the CRLF at the end of the
    +OK response from the server." A half line sent before the handshake cannot become
    the start of the first command under TLS."""
    conn = fresh()
    talk(conn, b"STLS\r\nUSER ev")
    conn.tls_established()
    assert talk(conn, b"il\r\nUSER alice\r\n").output == R.ERR_UNKNOWN_COMMAND + R.OK_SEND_PASS


def test_bytes_received_before_handshake_completes_are_discarded_rfc2595_s4():
    """RFC 2595 s4: "A TLS negotiation begins immediately after the CRLF at the end of the
    +OK response". Whatever the I/O layer feeds between the StartTls event and
    tls_established arrived before TLS, so it is forgotten with everything else learnt
    before the handshake."""
    conn = fresh()
    talk(conn, b"STLS\r\n")
    conn.receive_data(b"USER evil\r\nPASS injected\r\n")
    conn.tls_established()
    exchange = talk(conn, b"CAPA\r\n")
    assert exchange.output.startswith(R.OK_CAPA)
    assert exchange.events == []
    assert conn.state is State.AUTHORIZATION


def test_injected_login_cannot_complete_after_stls_rfc2595_s4():
    """RFC 2595 s4 / RFC 8314 s4: an injected USER/PASS pipelined with STLS must not log in,
    even when it names valid credentials."""
    conn = fresh()
    exchange = talk(conn, b"STLS\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n", respond=Responder())
    assert exchange.output == R.OK_BEGIN_TLS
    assert exchange.events == [StartTls()]
    assert conn.state is State.AUTHORIZATION
    assert conn.tls_active


def test_stls_after_tls_established_is_refused_and_does_not_clear_rfc2595_s4():
    """RFC 2595 s4: "A -ERR response MAY result if a security layer is already active."
    A refused STLS is an ordinary command: what follows it is still read."""
    conn = fresh()
    talk(conn, b"STLS\r\n")
    conn.tls_established()
    exchange = talk(conn, b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert exchange.output == R.ERR_ALREADY_TLS + R.OK_SEND_PASS
    assert exchange.events == [PasswordLogin("alice", "secret")]


def test_refused_stls_does_not_clear_the_buffer_rfc2595_s4():
    """RFC 2595 s4: STLS "Possible Responses: +OK -ERR". Only an accepted STLS starts a
    handshake; after -ERR the pipelined commands are answered in turn."""
    conn = fresh(ConnectionSettings(login_type="plaintext_login", stls_available=False))
    exchange = talk(conn, b"STLS\r\nUSER alice\r\n")
    assert exchange.output == R.ERR_NO_TLS_HERE + R.OK_SEND_PASS
