"""The socket-free LMTP pieces: DATA framing, enhanced status codes, trace headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.delivery.lmtp_protocol import (
    DataReader,
    declared_size,
    mailbox_candidates,
    trace_headers,
    with_enhanced_code,
)
from popbox.store.message import prepare, unstuff


def test_data_ends_only_at_crlf_dot_crlf_rfc5321_s4_5_2() -> None:
    """RFC 5321 s4.5.2: the data ends with a line holding a single "."; a leading dot
    the sender doubled is removed."""
    reader = DataReader(1000)
    # As the stream hands them over: split after each CRLF only.
    for chunk in (b"A: b\r\n", b"\r\n", b"..x\r\n", b".\n.\r\n"):
        assert not reader.feed(chunk)  # a bare-LF "dot line" does not end the data
    assert reader.feed(b".\r\n")
    # Every line beginning with a dot lost one: the sender doubled them (RFC 5321 s4.5.2).
    assert reader.content() == b"A: b\r\n\r\n.x\r\n\n.\r\n"


def test_fragments_of_a_long_line_are_joined_and_unstuffed_once() -> None:
    reader = DataReader(10_000)
    reader.feed(b"." + b"a" * 1000)  # a fragment: no CRLF yet
    reader.feed(b"." + b"b" * 10)  # still the same line: this dot is content
    reader.feed(b"\r\n")
    reader.feed(b".\r\n")
    assert reader.content() == b"a" * 1000 + b"." + b"b" * 10 + b"\r\n"


def test_over_limit_is_read_to_the_end_but_not_kept() -> None:
    """RFC 5321 s4.5.3.1.10: the refusal comes after the data; memory stays bounded."""
    reader = DataReader(10)
    reader.feed(b"0123456789\r\n")
    assert reader.too_big
    assert reader.feed(b".\r\n")
    with pytest.raises(RuntimeError):
        reader.content()
    with pytest.raises(RuntimeError):
        reader.feed(b"more\r\n")


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_any_message_survives_stuffing_and_any_chunking(raw: bytes, size: int) -> None:
    """Whatever the lines and the chunk sizes, the reader gives back what was sent."""
    text = prepare(raw.replace(b"\0", b"")).wire  # CRLF lines, dot-stuffed
    reader = DataReader(10_000)
    lines = (text + b".\r\n").splitlines(keepends=True)
    for line in lines:
        # The stream hands over long lines in pieces, never splitting the CRLF.
        body, end = (line[:-2], line[-2:]) if line.endswith(b"\r\n") else (line, b"")
        pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        pieces[-1] += end
        for piece in pieces:
            if piece:
                reader.feed(piece)
    assert reader.done
    assert reader.content() == unstuff(text)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("553 5.1.3 Error: malformed address", "553 5.1.3 Error: malformed address"),
        ("452 4.2.2 full", "452 4.2.2 full"),
        ("354 End data", "354 End data"),
    ],
)
def test_every_reply_carries_an_enhanced_code_rfc2034_s3(status: str, expected: str) -> None:
    """RFC 2034 s3: with ENHANCEDSTATUSCODES, 2xx/4xx/5xx replies begin with one."""
    assert with_enhanced_code(status) == expected


def test_declared_size_and_mailbox_candidates() -> None:
    assert declared_size(["BODY=8BITMIME", "SIZE=1234"]) == 1234
    assert declared_size(["SMTPUTF8"]) is None
    assert mailbox_candidates("Alice@Example.com") == ["Alice@Example.com", "Alice", "alice"]
    assert mailbox_candidates("bob") == ["bob"]


def test_trace_headers_are_header_lines_prepare_accepts_c0011() -> None:
    """RFC 5321 s4.4: Return-Path and Received; Delivered-To names the recipient."""
    headers = trace_headers(
        sender="<>",
        recipient="alice@example.com",
        helo="mx\x01.example.org",
        peer="[127.0.0.1]",
        hostname="pop.example.net",
        transaction_id="abc",
        utf8=False,
        now=0.0,
    )
    lines = headers.split(b"\r\n")
    assert lines[0] == b"Return-Path: <>"
    assert lines[1] == b"Delivered-To: alice@example.com"
    assert lines[2].startswith(b"Received: from mx")
    assert lines[3] == b"\tby pop.example.net (popbox) with LMTP id abc"
    assert lines[4].startswith(b"\tfor <alice@example.com>; ")
    prepare(b"Subject: x\r\n\r\n", trace_headers=headers)  # valid header lines
