"""Where an imported message's old unique-id comes from (C0009).

Clients that leave mail on the server remember the UIDLs they have seen; an import that
keeps them (``--keep-uidl``) spares those clients from downloading everything again.
Three sources, in this order of precedence:

* a CSV map given with ``--uidl-map FILE``: lines ``key,uidl`` where the key is a file
  name (Maildir, .eml folder; a Maildir name is matched without its ":2,flags" part) or
  a 1-based message number (mbox, and any source in order);
* Dovecot's ``dovecot-uidlist`` in a Maildir: a saved POP3 UIDL (the ``P`` field), else
  the UIDL Dovecot computes from ``pop3_uidl_format`` (``%08Xu%08Xv`` by default: the
  IMAP uid and the uidvalidity in hexadecimal; ``--uidl-format`` for other settings);
* an ``X-UIDL:`` header in the message (Dovecot's ``pop3_reuse_xuidl``, fetchmail).

A unique-id is 1 to 70 characters in 0x21-0x7E (RFC 1939 s7); anything else is not one.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_DOVECOT_FORMAT",
    "DovecotUidList",
    "numeric_uid",
    "read_dovecot_uidlist",
    "read_uidl_map",
    "valid_uidl",
    "x_uidl",
]

DEFAULT_DOVECOT_FORMAT = "%08Xu%08Xv"  # Dovecot's default pop3_uidl_format
_UNIQUE_ID = re.compile(r"[!-~]{1,70}")
_X_UIDL = re.compile(rb"^X-UIDL:[ \t]*([!-~]{1,70})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FORMAT_VARIABLE = re.compile(r"%(0?\d*)([xX]?)([uvf%])")
_MAX_UID = 2**63 - 1  # what the stores' integer columns hold


def valid_uidl(text: str) -> bool:
    """Whether ``text`` is a unique-id RFC 1939 s7 allows."""
    return _UNIQUE_ID.fullmatch(text) is not None


def numeric_uid(uidl: str) -> int | None:
    """The number a unique-id stands for when it is a plain decimal popbox could give out."""
    if uidl.isascii() and uidl.isdigit() and not uidl.startswith("0"):
        value = int(uidl)
        return value if value <= _MAX_UID else None
    return None


def x_uidl(raw: bytes) -> str | None:
    """The ``X-UIDL:`` header's value, looked for in the header section only."""
    end = _HEADER_END.search(raw)
    match = _X_UIDL.search(raw, 0, end.start() if end else len(raw))
    return None if match is None else match[1].decode("ascii")


def read_uidl_map(path: Path) -> dict[str, str]:
    """``key -> uidl`` from a CSV file of ``key,uidl`` lines; a header line is allowed.

    Raises ``ValueError`` naming the file (and the line, where there is one) when it
    cannot be read, is not UTF-8, is not well-formed CSV, or holds a malformed row or an
    invalid unique-id.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    # strict: an unterminated quote is an error, not a field that runs to the end.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    found: dict[str, str] = {}
    try:
        for row in reader:
            number = reader.line_num
            if not row or (number == 1 and [c.strip().lower() for c in row][1:] == ["uidl"]):
                continue
            if len(row) != 2 or not row[0].strip():
                raise ValueError(f"{path}:{number}: expected two fields: key,uidl")
            key, uidl = row[0].strip(), row[1].strip()
            if not valid_uidl(uidl):
                raise ValueError(f"{path}:{number}: {uidl!r} is not a unique-id (RFC 1939 s7)")
            found[key] = uidl
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    return found


@dataclass(frozen=True, slots=True)
class DovecotUidList:
    """What a ``dovecot-uidlist`` says: file base name -> (uid, saved POP3 UIDL or None)."""

    uidvalidity: int
    entries: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def uidl(self, base: str, uidl_format: str = DEFAULT_DOVECOT_FORMAT) -> str | None:
        """The POP3 UIDL Dovecot serves for the file ``base``, or None if not listed."""
        entry = self.entries.get(base)
        if entry is None:
            return None
        uid, saved = entry
        if saved is not None:
            return saved
        return expand_format(uidl_format, uid, self.uidvalidity, base)

    def uid(self, base: str) -> int | None:
        entry = self.entries.get(base)
        return None if entry is None else entry[0]


def expand_format(uidl_format: str, uid: int, uidvalidity: int, base: str) -> str:
    """Dovecot's ``pop3_uidl_format`` variables %u, %v and %f with width and hex modifiers."""

    def one(match: re.Match[str]) -> str:
        width, hex_case, name = match.groups()
        if name == "%":
            return "%"
        if name == "f":
            return base
        value = uid if name == "u" else uidvalidity
        # Dovecot's X modifier means hexadecimal, and Dovecot writes it in lower case.
        return format(value, f"{width}{'x' if hex_case else 'd'}")

    return _FORMAT_VARIABLE.sub(one, uidl_format)


def read_dovecot_uidlist(path: Path) -> DovecotUidList:
    """Parse a Dovecot ``dovecot-uidlist`` (versions 1 and 3).

    Version 3 records are ``<uid> [<key><value> ...] :<file base name>``; the ``P`` key
    holds a saved POP3 UIDL.  Version 1 records are ``<uid> <file base name>``.  Raises
    ``ValueError`` naming the line of anything else.
    """
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty")
    header = lines[0].split()
    version = header[0] if header else ""
    if version == "1" and len(header) >= 2:
        uidvalidity = int(header[1])
    elif version == "3":
        values = {item[0]: item[1:] for item in header[1:] if item}
        uidvalidity = int(values.get("V", "0"))
    else:
        raise ValueError(f"{path}:1: not a dovecot-uidlist version 1 or 3 header")
    result = DovecotUidList(uidvalidity=uidvalidity)
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            base, uid, saved = _uidlist_record(line, version)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not a dovecot-uidlist record ({exc})") from None
        result.entries[base] = (uid, saved)
    return result


def _uidlist_record(line: str, version: str) -> tuple[str, int, str | None]:
    uid_text, _, rest = line.partition(" ")
    uid = int(uid_text)
    if version == "1":
        return rest.strip(), uid, None
    fields, colon, base = rest.partition(":")
    if not colon:
        raise ValueError("no file name")
    saved = next((f[1:] for f in fields.split() if f.startswith("P")), None)
    return base, uid, saved if saved and valid_uidl(saved) else None
