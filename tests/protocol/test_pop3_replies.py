"""Status lines and multi-line framing (RFC 1939 s3, C0001, RFC 2449 s8, RFC 3206)."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import ConnectionSettings, Pop3Connection
from popbox.protocol.replies import MAX_RESPONSE_LINE, TERMINATOR, Err, Ok, RespCode, serialise
from popbox.protocol.replies import multiline as build_multiline
from popbox.protocol.testing import logged_in, message_info, talk


def test_ok_and_err_are_upper_case_status_indicators_rfc1939_s3():
    """RFC 1939 s3: "There are currently two status indicators: positive ("+OK") and
    negative ("-ERR"). Servers MUST send the "+OK" and "-ERR" in upper case." """
    assert serialise(Ok()) == b"+OK\r\n"
    assert serialise(Ok("fine")) == b"+OK fine\r\n"
    assert serialise(Err("no")) == b"-ERR no\r\n"


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (RespCode.AUTH, b"AUTH"),
        (RespCode.SYS_TEMP, b"SYS/TEMP"),
        (RespCode.SYS_PERM, b"SYS/PERM"),
        (RespCode.IN_USE, b"IN-USE"),
        (RespCode.LOGIN_DELAY, b"LOGIN-DELAY"),
    ],
)
def test_response_code_in_brackets_after_err_rfc2449_s8(code, text):
    """RFC 2449 s8: "extended response codes ... enclosed in square brackets" right after
    the status indicator (resp-code = "[" resp-level *("/" resp-level) "]")."""
    assert serialise(Err("why", code)) == b"-ERR [" + text + b"] why\r\n"


@pytest.mark.parametrize("length", [0, 1, 509, 510, 511, 512, 600, 100_000])
def test_every_status_line_is_at_most_512_octets_c0001(length):
    """C0001: "Microsoft Exchange Server responses are a maximum of 512 characters long,
    including the terminating CRLF." """
    for reply in (Ok("x" * length), Err("y" * length), Err("z" * length, RespCode.SYS_TEMP)):
        line = serialise(reply)
        assert len(line) <= MAX_RESPONSE_LINE
        assert line.endswith(b"\r\n")
        assert line.count(b"\r\n") == 1


def test_status_line_of_exactly_512_octets_is_not_cut_c0001():
    """C0001 / RFC 1939 s3: "Responses may be up to 512 characters long, including the
    terminating CRLF." 510 octets of line plus CRLF is allowed as is."""
    text = "x" * (510 - len("+OK "))
    assert serialise(Ok(text)) == f"+OK {text}\r\n".encode()
    assert len(serialise(Ok(text))) == 512
    assert serialise(Ok(text + "y")) == f"+OK {text}\r\n".encode()


@pytest.mark.parametrize("char", ["\u00e9", "\u20ac", "\U0001f600"])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_cut_never_splits_a_utf8_sequence_c0001(char, offset):
    """C0001: at most 512 octets including CRLF; the cut happens between characters, so the
    line stays valid UTF-8."""
    line = serialise(Ok("a" * offset + char * 300))
    assert len(line) <= 512
    text = line[:-2].decode("utf-8")  # raises if a sequence was split
    assert text.startswith("+OK " + "a" * offset + char)
    assert len(line) > 512 - 2 - len(char.encode())


def test_huge_banner_greeting_is_capped_c0001():
    """RFC 2449 s4: "The maximum length of the first line of a command response (including
    the initial greeting) is unchanged at 512 octets (including the terminating CRLF)." """
    conn = Pop3Connection(ConnectionSettings(banner="\u00e9" * 1000))
    greeting = talk(conn).output
    assert len(greeting) <= 512
    assert greeting.endswith(b"\r\n")
    greeting[:-2].decode("utf-8")


def test_long_listing_line_is_capped_c0001():
    """C0001 (DESIGN): "Every status and listing line is at most 512 octets including CRLF."
    Also RFC 2449 s5: "Each capability line is limited to 512 octets (including the
    CRLF)." """
    conn = logged_in(
        [message_info(1, 5, legacy_uidl="u" * 2000)], ConnectionSettings(tls_active=True)
    )
    output = talk(conn, b"UIDL\r\nUIDL 1\r\n").output
    assert all(len(line) + 2 <= 512 for line in output.split(b"\r\n"))
    conn = Pop3Connection(ConnectionSettings(implementation="i" * 5000))
    conn.data_to_send()
    capa = talk(conn, b"CAPA\r\n").output
    assert b"\r\nIMPLEMENTATION iii" in capa
    assert all(len(line) + 2 <= 512 for line in capa.split(b"\r\n"))


def test_multiline_is_status_lines_and_terminator_rfc1939_s3():
    """RFC 1939 s3: "When all lines of the response have been sent, a final line is sent,
    consisting of a termination octet (decimal code 046, ".") and a CRLF pair." """
    assert build_multiline(Ok("list"), ["a", "b c"]) == b"+OK list\r\na\r\nb c\r\n.\r\n"
    assert build_multiline(Ok(), []) == b"+OK\r\n" + TERMINATOR
    assert TERMINATOR == R.TERMINATOR


def test_multiline_byte_stuffs_lines_starting_with_dot_rfc1939_s3():
    """RFC 1939 s3: "If any line of the multi-line response begins with the termination
    octet, the line is "byte-stuffed" by pre-pending the termination octet to that line of
    the response." """
    assert build_multiline(Ok(), [".", ".x", "x."]) == b"+OK\r\n..\r\n..x\r\nx.\r\n.\r\n"


def test_multiline_caps_each_line_after_stuffing_c0001():
    """C0001: every line at most 512 octets including CRLF, the stuffed dot included."""
    out = build_multiline(Ok(), ["." * 600])
    assert out == b"+OK\r\n" + b"." * 510 + b"\r\n.\r\n"
