"""The users, passwords and messages every benchmark run provisions, made deterministically.

Theory of operation: the provisioning script and the load generator's client processes
each rebuild the same data from names alone (``mailbox(kind, index)``), so nothing is
pickled between processes, and a client can check every byte it retrieves against what
was delivered.  Messages are CRLF RFC 5322 text made of 74-octet lines cut from one
shared block, so a 1 MiB message costs a slice, not a loop.  Every 40th line starts
with "." so that both servers' byte-stuffing is exercised.

The verification in ``wire_form`` is written here on purpose rather than imported from
popbox: a benchmark that checks popbox's output with popbox's own code checks nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

__all__ = [
    "MAILBOXES",
    "MailboxKind",
    "mailbox",
    "make_message",
    "password",
    "users_of",
    "wire_form",
]

_LINE = 72  # text octets per body line; each line is 74 octets with its CRLF
_BLOCK_LINES = 20_000  # a 1.4 MiB block: larger than the largest message's body


@dataclass(frozen=True, slots=True)
class MailboxKind:
    """A family of users with identical mailboxes: ``count`` messages of ``size`` octets."""

    prefix: str
    size: int
    count: int


# Full sizes; ``scaled`` shrinks the counts for --quick.
MAILBOXES: dict[str, MailboxKind] = {
    "login": MailboxKind("login", 4 * 1024, 10),
    "r4k": MailboxKind("r4k", 4 * 1024, 1000),
    "r100k": MailboxKind("r100k", 100 * 1024, 100),
    "r1m": MailboxKind("r1m", 1024 * 1024, 25),
    "big": MailboxKind("big", 2 * 1024, 50_000),
    "dlv": MailboxKind("dlv", 4 * 1024, 0),  # LMTP recipients: empty, filled by the run
}


def users_of(kind: MailboxKind, how_many: int) -> list[str]:
    return [f"{kind.prefix}{index:05d}" for index in range(how_many)]


def password(user: str) -> str:
    # Distinct per user, with a space: PASS takes the rest of the line on both servers.
    return f"pw {user}"


@cache
def _block() -> bytes:
    lines = []
    for n in range(_BLOCK_LINES):
        digest = hashlib.sha256(n.to_bytes(4, "big")).hexdigest()
        text = (digest + digest)[:_LINE]
        if n % 40 == 7:
            text = "." + text[1:]  # a leading dot: must be stuffed on the wire
        lines.append(text.encode("ascii") + b"\r\n")
    return b"".join(lines)


def make_message(kind: MailboxKind, user: str, index: int) -> bytes:
    """Message ``index`` (0-based) of ``user``: CRLF text of about ``kind.size`` octets."""
    header = (
        f"From: sender{index}@bench.example\r\n"
        f"To: {user}@bench.example\r\n"
        f"Subject: benchmark message {index} of {kind.prefix}\r\n"
        f"Message-ID: <{user}.{index}@bench.example>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "\r\n"
    ).encode("ascii")
    lines = max((kind.size - len(header)) // (_LINE + 2), 1)
    start = (index * 7919 + len(user)) % (_BLOCK_LINES - lines)
    body = _block()[start * (_LINE + 2) : (start + lines) * (_LINE + 2)]
    return header + body


def mailbox(kind: MailboxKind, user: str, count: int | None = None) -> list[bytes]:
    return [make_message(kind, user, n) for n in range(kind.count if count is None else count)]


def wire_form(text: bytes) -> bytes:
    """What RETR must send after its status line: stuffed text and the terminator."""
    stuffed = text.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"
