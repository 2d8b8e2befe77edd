"""C0011 normalisation, byte-stuffing, sizes and TOP of popbox.store.message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.store.message import MalformedMessage, normalise, prepare, stuff, top_lines, unstuff

HEADER_NAME = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=10,
)
# Lines made of octets likely to matter: line-end pieces, dots, colons, 8-bit, text.
MESSAGE_BYTES = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b":", b" ", b"A", b"x", b"\xe9", b"\xff"]),
    max_size=60,
).map(b"".join)


def reference_normalise(raw: bytes) -> bytes:
    """A slow, line-by-line statement of the C0011 rules, to check the fast one against."""
    lines: list[bytes] = []
    current = b""
    i = 0
    while i < len(raw):
        octet = raw[i : i + 1]
        if octet == b"\r" and raw[i + 1 : i + 2] == b"\n":
            lines.append(current)
            current = b""
            i += 2
            continue
        if octet in {b"\r", b"\n"}:
            lines.append(current)
            current = b""
        else:
            current += octet
        i += 1
    if current or not lines:
        lines.append(current)
    first = lines[0]
    name, colon, _ = first.partition(b":")
    is_field = bool(colon) and bool(name) and all(0x21 <= c <= 0x7E for c in name)
    if first and not is_field:
        lines.insert(0, b"")
    return b"".join(line + b"\r\n" for line in lines)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"A: b\nc: d\n\nbody\n", b"A: b\r\nc: d\r\n\r\nbody\r\n"),
        (b"A: b\rc: d\r\rbody\r", b"A: b\r\nc: d\r\n\r\nbody\r\n"),
        (b"A: b\r\n\r\nmixed\nends\r", b"A: b\r\n\r\nmixed\r\nends\r\n"),
        (b"A: b\r\r\n", b"A: b\r\n\r\n"),
        (b"A: b\r\n\r\nno final line end", b"A: b\r\n\r\nno final line end\r\n"),
    ],
)
def test_bare_lf_and_cr_become_crlf_c0011(raw: bytes, expected: bytes) -> None:
    """C0011: delivered messages are normalised to CRLF RFC 5322 form."""
    assert normalise(raw) == expected


def test_crlf_message_is_returned_unchanged_c0011() -> None:
    """C0011: a message already in CRLF form is stored as it came."""
    raw = b"Subject: x\r\n\r\nline\r\n"
    assert normalise(raw) == raw


def test_nul_byte_is_refused_with_its_offset_c0011() -> None:
    """C0011: a NUL byte is handled explicitly, never silently corrupted."""
    with pytest.raises(MalformedMessage, match="NUL byte at offset 9"):
        prepare(b"A: b\r\n\r\nx\0y\r\n")


@pytest.mark.parametrize(
    "raw",
    [b"just a body line\r\n", b" folded: start\r\n", b"From a@b Mon\r\nA: b\r\n", b": x\r\n"],
)
def test_message_without_header_section_gets_empty_one_c0011(raw: bytes) -> None:
    """C0011: a message with no header/body separator is handled explicitly."""
    assert normalise(raw) == b"\r\n" + raw


def test_message_starting_with_blank_line_is_kept_c0011() -> None:
    """C0011: an empty header section followed by the separator is already explicit."""
    assert normalise(b"\r\nbody\r\n") == b"\r\nbody\r\n"
    assert normalise(b"") == b"\r\n"


def test_eight_bit_octets_are_kept_c0011() -> None:
    """C0011: normalisation changes line ends only; 8-bit octets stay as they are."""
    raw = b"Subject: caf\xc3\xa9\r\n\r\n\xff\xfe\x80\r\n"
    assert normalise(raw) == raw


def test_leading_dots_are_stuffed_rfc1939_s3() -> None:
    """RFC 1939 s3: lines beginning with the termination octet are byte-stuffed."""
    assert stuff(b".A: b\r\n\r\n.\r\n..x\r\ny.\r\n") == b"..A: b\r\n\r\n..\r\n...x\r\ny.\r\n"
    assert unstuff(b"..A: b\r\n\r\n..\r\n...x\r\ny.\r\n") == b".A: b\r\n\r\n.\r\n..x\r\ny.\r\n"


def test_size_is_octets_after_normalisation_before_stuffing_2_1_4() -> None:
    """2.1.4: exact RFC 822 size, CRLF line ends, before byte-stuffing."""
    new = prepare(b"A: b\n\n.x\n")
    assert new.wire == b"A: b\r\n\r\n..x\r\n"
    assert new.size == len(b"A: b\r\n\r\n.x\r\n") == 12
    assert new.legacy_uidl is None
    assert new.received_at is None


def test_trace_headers_are_prepended_and_counted() -> None:
    """DESIGN section 3: delivery adds trace headers, and the size counts them."""
    trace = b"Return-Path: <a@b>\r\nReceived: from x\r\n"
    new = prepare(b"body only\n", trace_headers=trace, received_at=5.0, legacy_uidl="u-1")
    assert new.wire == trace + b"\r\nbody only\r\n"
    assert new.size == len(new.wire)
    assert (new.received_at, new.legacy_uidl) == (5.0, "u-1")


@pytest.mark.parametrize(
    "trace", [b"Received: x\n", b"Received: x", b"no header\r\n", b"A: b\r\n\r\n"]
)
def test_malformed_trace_headers_are_refused(trace: bytes) -> None:
    """Trace headers must be CRLF header lines, or they would split the header section."""
    with pytest.raises(ValueError, match="trace headers"):
        prepare(b"A: b\r\n", trace_headers=trace)


@pytest.mark.parametrize("uidl", ["", "x" * 71, "has space", "caf\u00e9"])
def test_invalid_legacy_uidl_is_refused_rfc1939_s7(uidl: str) -> None:
    """RFC 1939 s7: the unique-id consists of one to 70 characters in the range 0x21 to 0x7E."""
    with pytest.raises(ValueError, match="unique-id"):
        prepare(b"A: b\r\n", legacy_uidl=uidl)


WIRE = b"A: b\r\nC: d\r\n\r\none\r\n..two\r\nthree\r\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (0, b"A: b\r\nC: d\r\n\r\n"),
        (1, b"A: b\r\nC: d\r\n\r\none\r\n"),
        (2, b"A: b\r\nC: d\r\n\r\none\r\n..two\r\n"),
        (3, WIRE),
        (1000, WIRE),
    ],
)
def test_top_returns_headers_blank_line_and_n_body_lines_rfc1939_s7(
    lines: int, expected: bytes
) -> None:
    """RFC 1939 s7 TOP: the headers, the blank line, then the number of lines indicated."""
    assert top_lines(WIRE, lines) == expected


def test_top_zero_of_empty_header_section_is_the_blank_line_rfc1939_s7() -> None:
    """RFC 1939 s7: with n = 0 only the header section and the separating blank line."""
    assert top_lines(b"\r\nbody\r\n", 0) == b"\r\n"
    assert top_lines(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"


def test_top_of_message_without_separator_is_whole_message_c0011() -> None:
    """C0011: a message with no header/body separator has no body to cut."""
    assert top_lines(b"A: b\r\nC: d\r\n", 0) == b"A: b\r\nC: d\r\n"


def test_top_with_negative_lines_is_refused() -> None:
    """RFC 1939 s7: the number of lines must be non-negative."""
    with pytest.raises(ValueError, match="negative"):
        top_lines(WIRE, -1)


@given(MESSAGE_BYTES)
def test_normalise_matches_line_by_line_reference_c0011(raw: bytes) -> None:
    """C0011: delivered messages are normalised to CRLF RFC 5322 form."""
    assert normalise(raw) == reference_normalise(raw)


@given(st.one_of(MESSAGE_BYTES, st.binary(max_size=200).map(lambda b: b.replace(b"\0", b""))))
def test_prepare_then_unstuff_round_trips_rfc1939_s3(raw: bytes) -> None:
    """RFC 1939 s3: the client removes the stuffed octet, recovering the message."""
    new = prepare(raw)
    text = normalise(raw)
    assert unstuff(new.wire) == text
    assert new.size == len(text)
    # No stuffed message can contain the terminator of a multi-line reply.
    assert b"\r\n.\r\n" not in b"\r\n" + new.wire
    assert all(
        not line.startswith(b".") or line.startswith(b"..") for line in new.wire.split(b"\r\n")
    )


@given(HEADER_NAME, MESSAGE_BYTES, st.integers(min_value=0, max_value=20))
def test_top_is_a_prefix_ending_at_a_line_end_rfc1939_s7(
    name: str, body: bytes, lines: int
) -> None:
    """RFC 1939 s7: TOP sends the headers, the blank line and at most n body lines."""
    wire = prepare(name.encode() + b": v\r\n\r\n" + body).wire
    top = top_lines(wire, lines)
    head, _, rest = top.partition(b"\r\n\r\n")
    assert wire.startswith(top)
    assert top.endswith(b"\r\n")
    assert unstuff(head) == name.encode() + b": v"
    assert rest.count(b"\r\n") == min(lines, wire.count(b"\r\n") - 2)
