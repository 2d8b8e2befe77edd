"""Line framing: LineBuffer alone, and through a connection (2.1.2, E0006, E0007)."""

from __future__ import annotations

import pytest

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.connection import ConnectionSettings, PasswordLogin, Pop3Connection, Signal
from popbox.protocol.framing import LineBuffer, LineTooLong
from popbox.protocol.testing import talk

PLAIN_OK = ConnectionSettings(login_type="plaintext_login")


def lines_of(buffer: LineBuffer, limit: int = 512) -> list[bytes | LineTooLong]:
    out: list[bytes | LineTooLong] = []
    while (line := buffer.next_line(limit)) is not None:
        out.append(line)
    return out


def fresh(settings: ConnectionSettings = PLAIN_OK) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


# -- LineBuffer -------------------------------------------------------------------------


def test_crlf_ends_a_line_and_is_removed_rfc1939_s3():
    """RFC 1939 s3: "All commands are terminated by a CRLF pair." """
    buffer = LineBuffer()
    buffer.feed(b"NOOP\r\nSTAT\r\n")
    assert lines_of(buffer) == [b"NOOP", b"STAT"]


def test_bare_lf_also_ends_a_line_rfc1939_s3():
    """RFC 1939 s3: "All commands are terminated by a CRLF pair." Some devices send a bare
    LF; the framing accepts it as a line end too (framing.py theory of operation)."""
    buffer = LineBuffer()
    buffer.feed(b"NOOP\nSTAT\r\nQUIT\n")
    assert lines_of(buffer) == [b"NOOP", b"STAT", b"QUIT"]


def test_cr_inside_a_line_is_kept_as_data_rfc1939_s3():
    """RFC 1939 s3: "All commands are terminated by a CRLF pair." A CR not followed by LF
    ends nothing; only the one CR right before the LF is removed."""
    buffer = LineBuffer()
    buffer.feed(b"NO\rOP\r\nX\r\r\n\r\n")
    assert lines_of(buffer) == [b"NO\rOP", b"X\r", b""]


def test_line_split_across_feeds_is_joined_rfc1939_s3():
    """RFC 1939 s3: "All commands are terminated by a CRLF pair." Bytes arrive in any
    pieces; a line is only complete at its LF, even when the CR came in the previous piece."""
    buffer = LineBuffer()
    for piece in (b"NO", b"OP\r", b"\nST", b"AT"):
        buffer.feed(piece)
        assert buffer.next_line(512) in {None, b"NOOP"}
    assert buffer.next_line(512) is None
    buffer.feed(b"\r\n")
    assert buffer.next_line(512) == b"STAT"


@pytest.mark.parametrize("limit", [40, 47, 255, 512, 1024])
def test_limit_counts_crlf_exact_limit_accepted_one_more_refused_e0006(limit):
    """E0006: "The minimum size is 40 bytes, the maximum size is 1024 bytes." 2.1.2: the
    maximum command length includes the CRLF, so a line of exactly ``limit`` octets passes
    and one octet more is refused."""
    buffer = LineBuffer()
    buffer.feed(b"x" * (limit - 2) + b"\r\n" + b"y" * (limit - 1) + b"\r\n")
    assert lines_of(buffer, limit) == [b"x" * (limit - 2), LineTooLong(limit)]


@pytest.mark.parametrize("limit", [40, 47, 512, 1024])
def test_bare_lf_counts_as_two_octets_e0006(limit):
    """E0006: "the maximum length of a command is ... 512 bytes". A bare LF counts as the
    CRLF it stands for, so the same line is accepted or refused whichever end it has."""
    buffer = LineBuffer()
    buffer.feed(b"x" * (limit - 2) + b"\n" + b"y" * (limit - 1) + b"\n")
    assert lines_of(buffer, limit) == [b"x" * (limit - 2), LineTooLong(limit)]


@pytest.mark.parametrize("split", [1, 100, 510, 511])
def test_exact_limit_accepted_when_fed_in_pieces_e0006(split):
    """E0006: the limit is 512 octets including CRLF, however the bytes are split; a
    pending CR at the end of a piece may still become the CR of the CRLF."""
    line = b"x" * 510 + b"\r\n"
    buffer = LineBuffer()
    buffer.feed(line[:split])
    assert buffer.next_line(512) is None
    buffer.feed(line[split:])
    assert buffer.next_line(512) == b"x" * 510


def test_pending_bytes_over_limit_reported_once_and_tail_discarded_2_1_2():
    """2.1.2 (DESIGN): "a longer line gets a clear -ERR, is discarded whole, and the session
    goes on." The overflow is reported as soon as it is seen; later pieces of the same
    line are dropped without a second report, and the next line is delivered intact."""
    buffer = LineBuffer()
    buffer.feed(b"x" * 511)
    assert buffer.next_line(512) == LineTooLong(512)
    assert len(buffer._buffer) == 0
    buffer.feed(b"y" * 5000)
    assert buffer.next_line(512) is None
    buffer.feed(b"zzz\r\nNOOP\r\n")
    assert lines_of(buffer) == [b"NOOP"]


def test_pending_cr_does_not_count_until_it_is_data_2_1_2():
    """2.1.2: the maximum includes the CRLF. 510 octets and a CR are within the limit
    (the CR may be the line end); a following octet that is not LF makes it too long."""
    buffer = LineBuffer()
    buffer.feed(b"x" * 510 + b"\r")
    assert buffer.next_line(512) is None
    buffer.feed(b"x")
    assert buffer.next_line(512) == LineTooLong(512)


def test_100k_without_lf_never_grows_buffer_past_limit_2_1_2():
    """2.1.2: "a default maximum command length of 512 octets is enforced." A client that
    never sends LF cannot make the buffer hold more than the limit."""
    buffer = LineBuffer()
    reports = []
    for _ in range(100):
        buffer.feed(b"a" * 1024)
        reports += lines_of(buffer)
        assert len(buffer._buffer) < 512
    assert reports == [LineTooLong(512)]


def test_clear_drops_buffered_bytes_and_discard_mode_rfc2595_s4():
    """RFC 2595 s4: "A TLS negotiation begins immediately after the CRLF at the end of the
    +OK response from the server." clear() forgets every buffered byte, including a
    half-discarded over-long line, so the next line after it starts clean."""
    buffer = LineBuffer()
    buffer.feed(b"x" * 600)
    assert buffer.next_line(512) == LineTooLong(512)
    buffer.feed(b"USER evil\r\nPASS")
    buffer.clear()
    assert buffer.next_line(512) is None
    buffer.feed(b"NOOP\r\n")
    assert buffer.next_line(512) == b"NOOP"


# -- through a connection -----------------------------------------------------------------


def test_exactly_512_octets_is_a_command_e0006():
    """E0006: "By default, the maximum length of a command is ... 512 bytes in Exchange
    2010 and Exchange 2013." A PASS line of exactly 512 octets incl. CRLF is processed."""
    conn = fresh()
    password = "p" * (512 - len("PASS \r\n"))
    exchange = talk(conn, b"USER alice\r\n", f"PASS {password}\r\n".encode())
    assert exchange.output == R.OK_SEND_PASS
    assert exchange.events == [PasswordLogin("alice", password)]


def test_513_octets_is_refused_and_the_session_goes_on_e0006():
    """E0006 and 2.1.2 (DESIGN): "a longer line gets a clear -ERR, is discarded whole, and
    the session goes on." """
    conn = fresh()
    exchange = talk(conn, b"USER alice\r\nPASS " + b"p" * 506 + b"\r\nNOOP\r\nUSER bob\r\n")
    assert exchange.output == (
        R.OK_SEND_PASS + R.line_too_long(512) + R.not_before_login("NOOP") + R.OK_SEND_PASS
    )
    assert exchange.events == []


def test_512_octets_with_bare_lf_counts_as_513_e0006():
    """E0006: the limit counts the CRLF; a bare LF counts as two octets, so 511 octets of
    command plus LF is over 512."""
    conn = fresh()
    exchange = talk(conn, b"USER " + b"u" * 506 + b"\nUSER " + b"u" * 505 + b"\n")
    assert exchange.output == R.line_too_long(512) + R.ERR_USER_BAD_NAME


def test_over_long_line_in_pieces_gives_one_err_and_next_command_runs_2_1_2():
    """2.1.2 (DESIGN): "a longer line gets a clear -ERR, is discarded whole, and the session
    goes on." Fed in pieces, it is reported once; its tail is not run as a command."""
    conn = fresh()
    exchange = talk(conn, b"CAPA " + b"x" * 600, b"y" * 600, b"\r\nQUIT\r\n", b"x" * 5)
    assert exchange.output == R.line_too_long(512) + R.OK_SIGNING_OFF
    assert exchange.events == [Signal.CLOSED]


def test_100k_without_lf_keeps_connection_buffer_capped_2_1_2():
    """2.1.2: "a default maximum command length of 512 octets is enforced." 100 KB with no
    LF gives one -ERR and never more than 512 octets buffered."""
    conn = fresh()
    output = b""
    for _ in range(100):
        output += talk(conn, b"A" * 1024).output
        assert len(conn._buffer._buffer) < 512
    assert output == R.line_too_long(512)
    assert talk(conn, b"\r\nQUIT\r\n").output == R.OK_SIGNING_OFF


@pytest.mark.parametrize(
    ("limit", "profile"),
    [(40, "minimum"), (47, "exchange2007"), (255, "RFC 2449"), (1024, "maximum")],
)
def test_max_command_size_setting_boundaries_e0006(limit, profile):
    """E0006: "the maximum length of a command is 47 bytes in Exchange 2007 ... The minimum
    size is 40 bytes, the maximum size is 1024 bytes." A line of exactly the setting
    (incl. CRLF) is run; one octet more is refused and the session goes on."""
    conn = fresh(ConnectionSettings(login_type="plaintext_login", max_command_size=limit))
    fits = "p" * (limit - len("PASS \r\n"))
    exchange = talk(conn, b"USER a\r\nPASS " + fits.encode() + b"x\r\n", b"NOOP\r\n")
    assert exchange.output == R.OK_SEND_PASS + R.line_too_long(limit) + R.not_before_login("NOOP")
    exchange = talk(conn, f"PASS {fits}\r\n".encode())
    assert exchange.events == [PasswordLogin("a", fits)], profile


def test_exchange2007_47_octets_is_four_char_command_space_40_char_argument_rfc2449_s4():
    """RFC 2449 s4: "The maximum length of a command is increased from 47 characters (4
    character command, single space, 40 character argument, CRLF) to 255 octets." Under
    the exchange2007 value a 40-character USER name fits and a 41-character one does not."""
    conn = fresh(ConnectionSettings(login_type="plaintext_login", max_command_size=47))
    exchange = talk(conn, b"USER " + b"u" * 40 + b"\r\nUSER " + b"u" * 41 + b"\r\n")
    assert exchange.output == R.OK_SEND_PASS + R.line_too_long(47)


def test_commands_up_to_255_octets_are_supported_by_default_e0007():
    """E0007: "Servers which support the CAPA command MUST support commands up to 255
    octets." With the 512 default a 255-octet USER line is a command."""
    conn = fresh()
    line = b"USER " + b"u" * 248 + b"\r\n"
    assert len(line) == 255
    assert talk(conn, line).output == R.OK_SEND_PASS


def test_empty_line_is_an_error_not_ignored_rfc1939_s3():
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator." """
    conn = fresh()
    assert talk(conn, b"\r\n\n").output == R.ERR_EMPTY_LINE * 2
