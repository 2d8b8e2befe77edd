"""What a POP3 source lists, and which of its unique-ids an import keeps (C0009).

The rule for unique-ids, applied once to the UIDL answer, in message-number order:

* a unique-id RFC 1939 s7 allows (1 to 70 octets in 0x21..0x7E), not seen before in
  the listing: kept byte for byte as the message's legacy UIDL;
* one it does not allow (empty, over 70 octets, other octets): the message is imported
  with a new popbox unique-id, and the report names its message number;
* one that repeats an earlier message's: the first message keeps it, every later one is
  imported with a new unique-id, and the report names both message numbers.

A message imported without its source unique-id is recognised on a later run by its
import key, which is then the SHA-256 of its header section plus how many messages with
the same header section came before it in the listing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Entry", "header_key", "plan_entries", "uidl_key"]

_UNIQUE_ID = re.compile(rb"[!-~]{1,70}")
_HEADER_END = re.compile(rb"\r\n\r\n")


@dataclass(frozen=True, slots=True)
class Entry:
    """One source message: its number, its LIST size, the unique-id kept (or None)."""

    number: int
    size: int
    uidl: str | None


def plan_entries(
    sizes: list[tuple[int, int]], uidls: list[tuple[int, bytes]] | None
) -> tuple[list[Entry], list[str]]:
    """The messages in number order with the unique-id each keeps, and the problems seen."""
    problems: list[str] = []
    by_number: dict[int, bytes] = {}
    for number, octets in uidls or []:
        if number in by_number:
            problems.append(f"message {number}: listed twice by UIDL; the first one counts")
            continue
        by_number[number] = octets
    listed = {number for number, _ in sizes}
    problems.extend(
        f"message {number}: in the UIDL answer but not in LIST; not imported"
        for number in sorted(set(by_number) - listed)
    )
    first_with: dict[str, int] = {}
    entries = []
    for number, size in sorted(sizes):
        raw = by_number.get(number)
        uidl: str | None = None
        if raw is None:
            if uidls is not None:
                problems.append(f"message {number}: not in the UIDL answer; given a new unique-id")
        elif _UNIQUE_ID.fullmatch(raw) is None:
            problems.append(
                f"message {number}: unique-id {raw[:80]!r} is not one RFC 1939 s7 allows"
                f" ({len(raw)} octets); given a new one"
            )
        else:
            text = raw.decode("ascii")
            if text in first_with:
                problems.append(
                    f"message {number}: unique-id {text!r} repeats message"
                    f" {first_with[text]}'s; given a new one"
                )
            else:
                first_with[text] = number
                uidl = text
        entries.append(Entry(number, size, uidl))
    return entries, problems


def uidl_key(uidl: str) -> str:
    """The import key of a message imported with its source unique-id."""
    return f"pop3:uidl:{uidl}"


def header_key(raw: bytes, seen: dict[bytes, int]) -> str:
    """The import key of a message without a usable unique-id; counts into ``seen``."""
    end = _HEADER_END.search(raw)
    digest = hashlib.sha256(raw[: end.start()] if end else raw).digest()
    occurrence = seen.get(digest, 0)
    seen[digest] = occurrence + 1
    return f"pop3:headers:{digest.hex()}:{occurrence}"
