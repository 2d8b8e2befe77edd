"""Property tests for framing, parsing and the connection (STYLE s4 "hypothesis for the
parser and framing")."""

from __future__ import annotations

import base64
import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

import pop3_replies as R  # noqa: N812 - STYLE s4 names the reply constants R
from popbox.protocol.commands import Command, ParseError, parse_command, parse_general
from popbox.protocol.connection import ConnectionSettings, Pop3Connection, Signal
from popbox.protocol.framing import LineBuffer, LineTooLong
from popbox.protocol.maildrop import Maildrop
from popbox.protocol.testing import Responder, message_info, talk

WIRE_1 = b"Subject: 1\r\n\r\nbody\r\n..dot\r\n"
WIRE_2 = b"Subject: 2\r\n\r\n"
MESSAGES = [
    (message_info(1, len(WIRE_1) - 1), WIRE_1),
    (message_info(2, len(WIRE_2), legacy_uidl="legacy-2"), WIRE_2),
]
PLAIN = base64.b64encode(b"\0alice\0secret").decode()
ALPHABET = bytes.maketrans(bytes(range(256)), b"ab\r\n" * 64)  # dense in line-end cases

# Every command a client may send, valid or not, except STLS: it drops what was pipelined
# behind it, so the bytes it drops depend on where the segments end (that is the point).
SCRIPT_LINES = [
    "CAPA",
    "USER alice",
    "USER bob",
    "PASS secret",
    "PASS wrong one",
    "AUTH",
    "AUTH PLAIN",
    f"AUTH PLAIN {PLAIN}",
    "AUTH GSSAPI =",
    PLAIN,
    "*",
    "=AAA",
    "STAT",
    "LIST",
    "LIST 2",
    "UIDL",
    "UIDL 1",
    "RETR 1",
    "RETR 3",
    "TOP 1 0",
    "top 2 5",
    "DELE 1",
    "DELE 1",
    "RSET",
    "NOOP",
    "QUIT",
    "",
    "XYZZY",
    "LIST\t \t1",
    "x" * 600,
]


def connection(**overrides: object) -> Pop3Connection:
    options: dict[str, object] = {
        "login_type": "plaintext_login",
        "sasl_mechanisms": (("PLAIN", True), ("GSSAPI", False)),
        "max_bad_commands": 50,
        "max_auth_failures": 5,
        **overrides,
    }
    return Pop3Connection(ConnectionSettings(**options))  # type: ignore[arg-type]


@st.composite
def scripts_and_splits(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    lines = draw(st.lists(st.sampled_from(SCRIPT_LINES), min_size=1, max_size=25))
    if draw(st.booleans()):  # reach TRANSACTION in half the cases
        lines.insert(0, f"AUTH PLAIN {PLAIN}")
    ends = draw(
        st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=len(lines), max_size=len(lines))
    )
    script = b"".join(line.encode() + end for line, end in zip(lines, ends, strict=True))
    cuts = sorted(draw(st.sets(st.integers(0, len(script)), max_size=20)))
    bounds = [0, *cuts, len(script)]
    return script, [script[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(scripts_and_splits())
def test_any_split_gives_same_bytes_and_events_rfc2449_s6_6(case):
    """RFC 2449 s6.6: "the client does not have to wait for the response to a command
    before issuing a subsequent command"; TCP may cut the stream anywhere, so any split of
    a byte script into segments gives the same replies and events as sending it whole."""
    script, chunks = case
    whole_responder = Responder(messages=MESSAGES)
    split_responder = Responder(messages=MESSAGES)
    whole = talk(connection(), script, respond=whole_responder)
    split = talk(connection(), *chunks, respond=split_responder)
    assert split == whole
    assert split_responder.updates == whole_responder.updates


MULTILINE_STARTS = (R.OK_CAPA, R.OK_MECHANISMS, R.OK_SCAN_LISTING, R.OK_UIDL_LISTING, R.OK_TOP)
OCTETS = re.compile(rb"\+OK \d+ octets")

TOKENS = [line.encode() for line in SCRIPT_LINES] + [
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b"\t",
    b"STLS\r\n",
    b"\xff\xfe",
    b"\xc3",
]


def check_output(output: bytes) -> None:
    """Only status lines, challenges and whole multi-line blocks, each line within 512."""
    assert output.endswith(b"\r\n") or not output
    in_block = False
    for line in output.split(b"\r\n")[:-1]:
        if in_block:
            if line == b".":
                in_block = False
            continue
        assert len(line) + 2 <= 512
        assert line.startswith((b"+OK", b"-ERR", b"+ ")), line
        in_block = line + b"\r\n" in MULTILINE_STARTS or OCTETS.fullmatch(line) is not None
    assert not in_block


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(st.binary(max_size=700), st.sampled_from(TOKENS)), min_size=1, max_size=40
    ),
    max_command_size=st.sampled_from([40, 47, 255, 512, 1024]),
    sasl_line_max=st.sampled_from([100, 2000]),
)
def test_arbitrary_bytes_never_raise_and_buffer_stays_capped_2_1_2(
    chunks, max_command_size, sasl_line_max
):
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator." 2.1.2:
    "a default maximum command length of 512 octets is enforced": whatever arrives, only
    replies come out and the buffer never holds more than the larger line limit."""
    conn = connection(max_command_size=max_command_size, sasl_line_max=sasl_line_max)
    respond = Responder(messages=MESSAGES)
    output = b""
    for chunk in chunks:
        exchange = talk(conn, chunk, respond=respond)
        output += exchange.output
        assert len(conn._buffer._buffer) <= max(max_command_size, sasl_line_max)
        if Signal.CLOSED in exchange.events:
            break
    check_output(output)


@settings(max_examples=1000, deadline=None)
@given(line=st.binary(max_size=300), single_space=st.booleans())
def test_parse_command_on_arbitrary_bytes_returns_command_or_parse_error_rfc1939_s3(
    line, single_space
):
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator." The
    parser never raises; it answers with a command or the reason there is none."""
    result = parse_command(line, single_space=single_space)
    assert isinstance(result, (ParseError, *Command.__args__))


@settings(max_examples=500, deadline=None)
@given(
    line=st.lists(
        st.sampled_from([b"LIST", b"TOP", b"PASS", b"AUTH", b" ", b"\t", b"1", b"0", b"x", b"="]),
        max_size=12,
    ),
    single_space=st.booleans(),
)
def test_parse_command_on_command_shaped_bytes_never_raises_2_1_1(line, single_space):
    """2.1.1: "Microsoft Exchange Server separates keywords and arguments by one or more
    SPACE characters, or one or more TAB characters." Any mix of keywords, separators and
    arguments parses to a command or a ParseError."""
    result = parse_command(b"".join(line), single_space=single_space)
    assert isinstance(result, (ParseError, *Command.__args__))


def model_lines(data: bytes, limit: int) -> list[bytes | LineTooLong]:
    """What the framing must return for ``data``: one entry per LF-terminated line, and a
    LineTooLong for an unterminated tail already over the limit."""
    *complete, tail = data.split(b"\n")
    out: list[bytes | LineTooLong] = []
    for segment in complete:
        content = segment.removesuffix(b"\r")
        out.append(content if len(content) <= limit - 2 else LineTooLong(limit))
    if len(tail) - tail.endswith(b"\r") > limit - 2:
        out.append(LineTooLong(limit))
    return out


@settings(max_examples=1000, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=20).map(lambda b: b.translate(ALPHABET)), max_size=30),
    limit=st.integers(2, 12),
)
def test_line_buffer_matches_model_for_any_split_2_1_2(pieces, limit):
    """2.1.2 (DESIGN): the limit counts the CRLF; "a longer line gets a clear -ERR, is
    discarded whole, and the session goes on." Fed in any pieces, LineBuffer reports
    exactly the lines (or one LineTooLong per over-long line) of the whole input, and
    never holds more than the limit between calls."""
    buffer = LineBuffer()
    got: list[bytes | LineTooLong] = []
    for piece in pieces:
        buffer.feed(piece)
        while (line := buffer.next_line(limit)) is not None:
            got.append(line)
        assert len(buffer._buffer) <= limit - 1
    assert got == model_lines(b"".join(pieces), limit)


@given(
    verb=st.sampled_from([b"RETR", b"retr", b"Dele", b"LIST", b"uidl", b"STAT", b"TOPS", b"QUIT"]),
    number=st.from_regex(rb"\A[0-9]{1,12}\Z"),
    single_space=st.booleans(),
)
def test_the_one_number_shortcut_parses_as_the_general_parser(verb, number, single_space):
    """parse_command's shortcut for "VERB n" gives exactly what the general parser does."""
    line = verb + b" " + number
    assert parse_command(line, single_space=single_space) == parse_general(
        line, single_space=single_space
    )


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=30),
    exact=st.booleans(),
    steps=st.lists(st.one_of(st.integers(1, 32), st.none()), max_size=40),
)
def test_stat_kept_up_to_date_equals_a_recount_rfc1939_s5(sizes, exact, steps):
    """RFC 1939 s5: STAT counts the messages not marked as deleted and their octets.  The
    maildrop keeps both figures as DELE and RSET (None here) go; they must always equal
    a recount of the live messages."""
    infos = [message_info(n, size, stored_size=stored) for n, (size, stored) in enumerate(sizes, 1)]
    maildrop = Maildrop(infos, exact_size=exact)
    for step in [*steps, None, 1]:
        if step is None:
            maildrop.reset()
        else:
            maildrop.delete(step)  # an -ERR for a bad number changes nothing
        live = [maildrop.size_of(info) for _, info in maildrop.live()]
        assert maildrop.stat() == (len(live), sum(live))
