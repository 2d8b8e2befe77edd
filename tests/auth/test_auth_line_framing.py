"""The AUTH line's own length cap, byte in and byte out (RFC 5034 s4, sans-IO)."""

from __future__ import annotations

import base64

import pytest

from popbox.protocol.connection import ConnectionSettings, Pop3Connection, SaslStart
from popbox.protocol.framing import LineBuffer, LineTooLong
from popbox.protocol.testing import logged_in, talk

LONG = b"x" * 700


@pytest.mark.parametrize("head", [b"AUTH ", b"auth\t", b"AuTh  "])
def test_auth_line_gets_the_sasl_cap_in_pieces(head):
    buffer = LineBuffer()
    line = head + LONG
    for n in range(0, len(line), 37):  # arrives in pieces, the cap decided on the first
        buffer.feed(line[n : n + 37])
        assert buffer.next_line(512, auth_limit=4096) is None
    buffer.feed(b"\r\n")
    assert buffer.next_line(512, auth_limit=4096) == line


@pytest.mark.parametrize("head", [b"AUTHX ", b"USER ", b" AUTH "])
def test_other_lines_keep_the_command_cap(head):
    buffer = LineBuffer()
    buffer.feed(head + LONG + b"\r\n")
    assert buffer.next_line(512, auth_limit=4096) == LineTooLong(512)


def test_without_auth_limit_an_auth_line_has_the_command_cap():
    buffer = LineBuffer()
    buffer.feed(b"AUTH " + LONG + b"\r\n")
    assert buffer.next_line(512) == LineTooLong(512)


def test_over_long_auth_line_reports_the_sasl_cap_and_next_line_is_capped_again():
    buffer = LineBuffer()
    buffer.feed(b"AUTH " + b"y" * 5000)
    assert buffer.next_line(512, auth_limit=4096) == LineTooLong(4096)
    buffer.feed(b"yyy\r\nNOOP " + LONG + b"\r\n")
    assert buffer.next_line(512, auth_limit=4096) == LineTooLong(512)


def test_long_initial_response_reaches_the_mechanism_rfc5034_s4():
    """RFC 5034 s4: the initial response is a SASL response: bound by sasl_line_max."""
    conn = Pop3Connection(
        ConnectionSettings(tls_active=True, sasl_mechanisms=(("PLAIN", True),), sasl_line_max=2048)
    )
    initial = b"\0" + b"u" * 255 + b"\0" + b"p" * 255 + b"z" * 300
    line = b"AUTH PLAIN " + base64.b64encode(initial) + b"\r\n"
    assert 700 < len(line) <= 2048
    assert talk(conn, line).events == [SaslStart("PLAIN", initial)]


def test_long_auth_line_after_login_is_not_given_the_sasl_cap():
    """After login AUTH is refused anyway (RFC 5034 s4: AUTHORIZATION state only), so
    its line keeps the command cap there."""
    conn = logged_in(
        settings=ConnectionSettings(tls_active=True, sasl_mechanisms=(("PLAIN", True),))
    )
    exchange = talk(conn, b"AUTH PLAIN " + LONG + b"\r\n")
    assert exchange.output == b"-ERR line too long: the limit is 512 octets including CRLF\r\n"
