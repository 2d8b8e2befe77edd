"""The LMTP pieces that need no socket: DATA framing, reply texts, trace headers.

Theory of operation: aiosmtpd parses the LMTP commands (RFC 2033 is SMTP with LHLO
instead of EHLO) and ``lmtp_server`` drives the transaction; everything here is plain
functions and one small state machine, tested byte for byte.

* ``DataReader`` collects the DATA payload from the lines (or the fragments of an
  over-long line) the stream gives it: it undoes dot-transparency (RFC 5321 s4.5.2),
  recognises the terminating ``.CRLF`` only at the start of a line and only after CRLF
  (so a bare LF can never end the data: no SMTP smuggling), and stops keeping octets
  once ``limit`` is passed while still reading to the end, so the size refusal comes
  after DATA, where RFC 5321 s4.5.3.1.10 puts it.  What it keeps goes to a ``DataSink``:
  a list in memory by default, ``spool.DataSpool`` (memory, then a file) in the server.
* Replies carry RFC 3463 enhanced status codes (RFC 2033 s5 requires
  ENHANCEDSTATUSCODES); ``with_enhanced_code`` adds a generic one to the replies that
  aiosmtpd writes itself.
* ``trace_headers`` builds the Return-Path, Delivered-To and Received lines a delivery
  puts in front of the message (RFC 5321 s4.4, C0011).
"""

from __future__ import annotations

import re
from email.utils import formatdate
from typing import Protocol

__all__ = [
    "DataReader",
    "DataSink",
    "declared_size",
    "mailbox_candidates",
    "reply_bad_message",
    "reply_delivered",
    "reply_no_mailbox",
    "reply_over_quota",
    "reply_temporary",
    "reply_too_big",
    "trace_headers",
    "with_enhanced_code",
]

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_REPLY = re.compile(r"([245])(\d\d)([ -])(.*)", re.DOTALL)
# RFC 3463 codes for aiosmtpd's own replies, by reply code; others get X.0.0.
_DEFAULT_DETAIL = {
    "500": "5.5.2",  # syntax error, command unrecognised
    "501": "5.5.4",  # syntax error in parameters
    "502": "5.5.1",  # command not implemented
    "503": "5.5.1",  # bad sequence of commands
    "504": "5.5.4",
    "552": "5.3.4",  # message too big
    "553": "5.1.3",  # bad address syntax
    "555": "5.5.4",  # parameters not recognised
}


def with_enhanced_code(status: str) -> str:
    """``status`` with an RFC 3463 code after the reply code when it has none.

    Only 2xx/4xx/5xx single-line replies get one; the caller leaves out the greeting and
    the LHLO reply, which RFC 2034 s3 exempts.
    """
    match = _REPLY.fullmatch(status)
    if match is None or _ENHANCED.match(match[4]):
        return status
    code = match[1] + match[2]
    detail = _DEFAULT_DETAIL.get(code, f"{match[1]}.0.0")
    return f"{code}{match[3]}{detail} {match[4]}"


def reply_delivered(address: str, uid: int) -> str:
    return f"250 2.1.5 <{address}> delivered as message {uid}"


def reply_no_mailbox(address: str) -> str:
    return f"550 5.1.1 <{address}>: no such mailbox here"


def reply_over_quota(address: str, *, permanent: bool) -> str:
    # RFC 3463 X.2.2 "mailbox full"; temporary by default, so the MTA keeps the message
    # queued while the user makes room, as Exchange does.
    if permanent:
        return f"552 5.2.2 <{address}>: mailbox is full"
    return f"452 4.2.2 <{address}>: mailbox is full, try again later"


def reply_too_big(limit: int) -> str:
    return f"552 5.3.4 message exceeds the maximum size of {limit} octets"


def reply_bad_message(address: str, problem: str) -> str:
    # 5.6.0: "other or undefined media error"; the text names the problem.
    return f"554 5.6.0 <{address}>: message refused: {problem}"


def reply_temporary(address: str) -> str:
    return f"451 4.3.0 <{address}>: mailbox temporarily unavailable, try again later"


def declared_size(mail_options: list[str]) -> int | None:
    """The ``SIZE=n`` of MAIL FROM (RFC 1870), or None; aiosmtpd has checked the digits."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def mailbox_candidates(address: str) -> list[str]:
    """Mailbox names a recipient address may stand for, most specific first.

    ``alice@example.com`` is looked up as itself, then as ``alice``: popbox users are
    usually local names, and the MTA has already decided that the domain is ours.
    """
    local = address.rpartition("@")[0] if "@" in address else address
    candidates = [address, local, local.lower()]
    return list(dict.fromkeys(c for c in candidates if c))


class DataSink(Protocol):
    """Where a ``DataReader`` keeps the payload."""

    def write(self, chunk: bytes) -> None:
        """Keep ``chunk`` after what was kept before."""

    def discard(self) -> None:
        """Drop everything kept: nothing more will be written."""

    def content(self) -> bytes:
        """Everything kept, as one value."""


class _Parts:
    """The default sink: the chunks in a list."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self._parts.append(chunk)

    def discard(self) -> None:
        self._parts.clear()

    def content(self) -> bytes:
        return b"".join(self._parts)


class DataReader:
    """The DATA payload of one transaction, fed one line (or line fragment) at a time.

    ``feed`` takes what the stream gives: a whole line ending in CRLF, or a fragment of
    an over-long line without one (a CRLF is never split between two fragments).  It
    returns True once the terminating ``.CRLF`` has been read.  Past ``limit`` octets
    nothing more is kept and ``too_big`` is set.
    """

    def __init__(self, limit: int, sink: DataSink | None = None) -> None:
        self._limit = limit
        self.sink: DataSink = _Parts() if sink is None else sink
        self._line_start = True
        self.size = 0
        self.too_big = False
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        if self.done:
            raise RuntimeError("the data has already ended")
        if self._line_start:
            if chunk == b".\r\n":
                self.done = True
                return True
            if chunk.startswith(b"."):
                chunk = chunk[1:]  # RFC 5321 s4.5.2: the sender doubled a leading dot
        self._line_start = chunk.endswith(b"\r\n")
        self.size += len(chunk)
        if self.too_big:
            return False
        if self.size > self._limit:
            self.too_big = True
            self.sink.discard()
        else:
            self.sink.write(chunk)
        return False

    def content(self) -> bytes:
        """The message as sent, dot-transparency undone; only once ``done``."""
        if not self.done or self.too_big:
            raise RuntimeError("no complete message to hand over")
        return self.sink.content()


def trace_headers(  # noqa: PLR0913 - every one is a field of the Received line
    *,
    sender: str,
    recipient: str,
    helo: str,
    peer: str,
    hostname: str,
    transaction_id: str,
    utf8: bool,
    now: float,
) -> bytes:
    """Return-Path, Delivered-To and Received lines for one recipient (RFC 5321 s4.4).

    ``sender`` is the MAIL FROM address (``<>`` for a bounce).  Addresses may be UTF-8
    (SMTPUTF8, RFC 6531), which is kept as 8-bit header text; the protocol name says so
    ("UTF8LMTP", RFC 6531 s3.7.3).
    """
    return_path = "<>" if sender in {"", "<>"} else f"<{sender}>"
    protocol = "UTF8LMTP" if utf8 else "LMTP"
    lines = [
        f"Return-Path: {return_path}",
        f"Delivered-To: {recipient}",
        f"Received: from {helo or 'unknown'} ({peer})",
        f"\tby {hostname} (popbox) with {protocol} id {transaction_id}",
        f"\tfor <{recipient}>; {formatdate(now, localtime=True)}",
    ]
    # surrogateescape: aiosmtpd decodes arguments that way, so 8-bit octets come back.
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")
