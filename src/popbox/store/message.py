"""Turning raw message bytes (from an MTA or an import) into what the store keeps.

Theory of operation: a message arrives as arbitrary octets.  ``normalise`` applies the
C0011 rules once, at delivery, so that every later reader sees the same RFC 5322 form:

* bare LF and bare CR become CRLF, and the message ends with CRLF;
* a NUL byte is refused with ``MalformedMessage`` (never silently dropped or replaced);
* a message whose first line is not a header field gets an empty header section (one
  CRLF in front), so that the header/body boundary is explicit and TOP is well defined;
* 8-bit octets are kept as they are.

``prepare`` then prepends trace headers, records the exact size (the octets RETR sends,
before byte-stuffing: 2.1.4, 2.1.5) and byte-stuffs the result into wire form (RFC 1939
section 3) so RETR is a straight copy.  All of it works on the whole buffer with
``bytes`` methods and ``re``: a per-line Python loop would make large messages slow.
"""

from __future__ import annotations

import re
from itertools import islice

from popbox.store.base import NewMessage
from popbox.store.spooled import SpooledWire, wire_octets

__all__ = [
    "MalformedMessage",
    "normalise",
    "prepare",
    "prepare_stuffed",
    "stuff",
    "top_lines",
    "unstuff",
]

# RFC 5322 section 3.6.8: a field name is one or more printable characters except colon.
_HEADER_FIELD = re.compile(rb"[!-9;-~]+:")
_CRLF = re.compile(rb"\r\n")
# RFC 1939 section 7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UNIQUE_ID = re.compile(r"[!-~]{1,70}")


class MalformedMessage(ValueError):
    """The octets cannot be stored without altering them silently (C0011)."""


def normalise(raw: bytes) -> bytes:
    """Return ``raw`` in the CRLF RFC 5322 form the store keeps (C0011).

    Raises ``MalformedMessage`` on a NUL byte, naming its offset in ``raw``.  An empty
    input becomes a lone CRLF: an empty header section and no body.  Callers strip
    transport framing first (an mbox ``From `` line is not a header field, and would
    otherwise make the whole message a body).
    """
    nul = raw.find(b"\0")
    if nul >= 0:
        raise MalformedMessage(f"message contains a NUL byte at offset {nul}")
    text = _crlf_lines(raw)
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    if not text.startswith(b"\r\n") and _HEADER_FIELD.match(text) is None:
        text = b"\r\n" + text
    return text


def _crlf_lines(raw: bytes) -> bytes:
    # Most mail already uses CRLF (or only LF): the counts tell us so without
    # rewriting the buffer.  Otherwise each line end (CRLF, bare CR, bare LF) becomes
    # one LF, then every LF a CRLF: three passes in C, faster than a regex substitution.
    crs = raw.count(b"\r")
    if crs == 0:
        return raw.replace(b"\n", b"\r\n")
    if crs == raw.count(b"\r\n") == raw.count(b"\n"):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def stuff(text: bytes) -> bytes:
    """Byte-stuff a CRLF message: every line that begins with "." gets one more (RFC 1939 s3).

    The result carries no terminating ".CRLF"; the reply writer adds it.
    """
    stuffed = text.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def unstuff(wire: bytes) -> bytes:
    """Undo ``stuff``: remove the extra "." of every line that begins with ".."."""
    text = wire.replace(b"\r\n..", b"\r\n.")
    return text[1:] if text.startswith(b"..") else text


def prepare(
    raw: bytes,
    *,
    legacy_uidl: str | None = None,
    received_at: float | None = None,
    trace_headers: bytes = b"",
) -> NewMessage:
    """Normalise ``raw`` and build the ``NewMessage`` a store delivers.

    ``trace_headers`` (Return-Path, Received, ...) are CRLF-terminated header lines that
    go in front of the message; they count in its size.  ``legacy_uidl`` is an imported
    message's unique-id from its old server and must be a valid RFC 1939 unique-id.
    Raises ``MalformedMessage`` as ``normalise`` does, and ``ValueError`` for a bad
    ``legacy_uidl`` or trace headers that are not CRLF-terminated header lines.
    """
    if legacy_uidl is not None and _UNIQUE_ID.fullmatch(legacy_uidl) is None:
        raise ValueError("a legacy unique-id is 1 to 70 characters in 0x21-0x7E (RFC 1939 s7)")
    if trace_headers and (
        _HEADER_FIELD.match(trace_headers) is None
        or normalise(trace_headers) != trace_headers
        or b"\r\n\r\n" in trace_headers
    ):
        raise ValueError("trace headers must be CRLF-terminated header lines")
    text = trace_headers + normalise(raw)
    return NewMessage(
        wire=stuff(text), size=len(text), legacy_uidl=legacy_uidl, received_at=received_at
    )


def prepare_stuffed(
    wire: bytes | SpooledWire, *, legacy_uidl: str | None = None, received_at: float | None = None
) -> NewMessage:
    """``prepare(unstuff(wire))`` for a message that arrives byte-stuffed (a RETR answer).

    When C0011 leaves the message as it is and its stuffing is the one ``stuff`` makes
    (the common case), ``wire`` is stored as it came: a few counts instead of two more
    copies of a message that may be 50 MiB, and a spooled one stays in its file.
    Otherwise it falls back to ``prepare``, which rewrites the message in memory.
    """
    if legacy_uidl is not None and _UNIQUE_ID.fullmatch(legacy_uidl) is None:
        raise ValueError("a legacy unique-id is 1 to 70 characters in 0x21-0x7E (RFC 1939 s7)")
    counts = _WireCounts()
    if isinstance(wire, SpooledWire):
        for piece in wire.pieces():
            counts.add(piece)
        head = wire.head
    else:
        counts.add(wire)
        head = wire
    if counts.kept_as_it_came(head):
        return NewMessage(
            wire=wire,
            size=len(wire) - counts.stuffed,
            legacy_uidl=legacy_uidl,
            received_at=received_at,
        )
    return prepare(unstuff(wire_octets(wire)), legacy_uidl=legacy_uidl, received_at=received_at)


class _WireCounts:
    """What ``prepare_stuffed`` asks of the octets, counted a piece at a time.

    A pattern that spans two pieces is found in the last three octets of the one before
    joined to the next; none of the patterns can overlap itself, so subtracting what the
    three octets alone hold counts each occurrence once.
    """

    def __init__(self) -> None:
        self.crs = self.lfs = self.crlfs = self.dot_lines = self.stuffed = 0
        self.nul = False
        self._tail = b""

    def add(self, piece: bytes) -> None:
        joined, tail = self._tail + piece, self._tail
        self.crs += piece.count(b"\r")
        self.lfs += piece.count(b"\n")
        self.crlfs += joined.count(b"\r\n") - tail.count(b"\r\n")
        self.dot_lines += joined.count(b"\r\n.") - tail.count(b"\r\n.")
        self.stuffed += joined.count(b"\r\n..") - tail.count(b"\r\n..")
        self.nul = self.nul or piece.find(b"\0") >= 0
        self._tail = joined[-3:]

    def kept_as_it_came(self, head: bytes) -> bool:
        return (
            self._tail.endswith(b"\r\n")
            and self.crs == self.crlfs == self.lfs
            and not self.nul
            and not head.startswith(b".")  # unstuff treats a first line apart: leave it to it
            and (head.startswith(b"\r\n") or _HEADER_FIELD.match(head) is not None)
            and self.dot_lines == self.stuffed  # every dot-line stuffed, as ``stuff`` does
        )


def top_lines(wire: bytes, lines: int) -> bytes:
    """The header section, the blank line and at most ``lines`` body lines (RFC 1939 s7 TOP).

    Works on the wire form and returns wire form.  ``lines`` of 0 means headers only.
    A message without a header/body separator has no body to cut: it is returned whole.
    """
    if lines < 0:
        raise ValueError("the number of body lines cannot be negative")
    if wire.startswith(b"\r\n"):
        body_start = 2  # an empty header section: the first line is the separator
    else:
        separator = wire.find(b"\r\n\r\n")
        if separator < 0:
            return wire
        body_start = separator + 4
    if lines == 0:
        return wire[:body_start]
    # islice advances the match iterator in C, so skipping body lines costs no Python loop.
    line_end = next(islice(_CRLF.finditer(wire, body_start), lines - 1, None), None)
    return wire if line_end is None else wire[: line_end.end()]
