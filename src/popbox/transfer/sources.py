"""Reading messages out of an mbox file, a Maildir, or a folder of .eml files.

Each reader yields ``SourceMessage``s in the order the old server served them, with
the framing of the format removed (an mbox ``From `` line and its quoting), and with what
the source says about the message: its old unique-id (see ``uidl``), when it arrived,
and whether it had been read.  Readers stream: a multi-gigabyte mbox is never held in
memory, only the message being read.

What a reader finds that is not a whole message it yields as ``NotImported``, naming the
path, rather than dropping it or passing on something altered: an entry of a Maildir or
.eml folder that is not a regular file (a directory, a FIFO, a socket or device, a
symbolic link to nothing) or cannot be read, and an mbox's last message when the file
ends inside it.  RFC 4155 ends every message of an mbox with an empty line, the last
one too; a file that stops without one was cut short (a copy still running, a full
disk), and importing what is there would store a truncated message that the complete
file, imported later, could not replace.

mbox quoting (RFC 4155 and the mbox variants): a body line beginning with "From " is
written with a ">" in front.  mboxrd quotes every ``>*From `` line with one more ">", so
reading removes one ">" from each such line; mboxo quotes only ``From `` lines, so
reading unquotes only ``>From `` (a line that really began with ">From " cannot be told
apart there: that is mboxo's flaw, and why mboxrd is the default).
"""

from __future__ import annotations

import calendar
import email.utils
import re
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from popbox.transfer.uidl import DEFAULT_DOVECOT_FORMAT, read_dovecot_uidlist, x_uidl

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator
    from pathlib import Path

__all__ = [
    "MboxVariant",
    "NotImported",
    "SourceItem",
    "SourceMessage",
    "read_eml_folder",
    "read_maildir",
    "read_mbox",
    "unquote_from",
]

MboxVariant = Literal["mboxrd", "mboxo"]

_MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
_MBOXO_QUOTED = re.compile(rb"^>(From )", re.MULTILINE)
_STATUS = re.compile(rb"^Status:[ \t]*([A-Z]*)", re.IGNORECASE | re.MULTILINE)
_DATE_HEADER = re.compile(rb"^Date:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MAILDIR_FLAGS = re.compile(r":2,([A-Za-z]*)$")
_BLANK = frozenset({b"\n", b"\r\n"})


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message of a source, framing removed."""

    raw: bytes
    name: str  # what the CSV map calls it: a file name, or the 1-based number in an mbox
    number: int  # 1-based position in the source
    uidl: str | None  # the unique-id the source itself records (X-UIDL, dovecot-uidlist)
    received_at: float | None
    retrieved: bool  # read at the old server (Maildir "S" flag, mbox "Status: R")
    location: str | None = None  # where reports say it is: its file, or the mbox and line


@dataclass(frozen=True, slots=True)
class NotImported:
    """Something of a source that is not imported (see module docs), and why."""

    location: str  # a path; for an mbox message, the file and the line it starts on
    reason: str


# What a reader yields: a message, or what it found that is not one.
SourceItem = SourceMessage | NotImported


def unquote_from(body: bytes, variant: MboxVariant) -> bytes:
    """Undo mbox ``From `` quoting (see module docs)."""
    pattern = _MBOXRD_QUOTED if variant == "mboxrd" else _MBOXO_QUOTED
    return pattern.sub(rb"\1", body)


def _headers(raw: bytes) -> bytes:
    end = _HEADER_END.search(raw)
    return raw[: end.start()] if end else raw


def _date_header(raw: bytes) -> float | None:
    match = _DATE_HEADER.search(_headers(raw))
    if match is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(match[1].decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _from_line_time(line: bytes) -> float | None:
    # "From sender@example.org Sat Jan  3 01:05:34 1996" (asctime, UTC by convention).
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 3:
        return None
    text = " ".join(parts[2].split()[:5])
    try:
        return float(calendar.timegm(time.strptime(text, "%a %b %d %H:%M:%S %Y")))
    except ValueError:
        return None


def read_mbox(path: Path, variant: MboxVariant = "mboxrd") -> Iterator[SourceItem]:
    """The messages of the mbox file at ``path``.

    A message starts at a ``From `` line at the beginning of the file or after an empty
    line; the empty line before the next ``From `` line is mbox framing, not message.
    A last message without its empty line is ``NotImported`` (module docs).
    """
    if not path.is_file():  # read twice by the importer: a FIFO would be empty the second time
        raise ValueError(f"{path}: not a regular file")
    number = 0
    with path.open("rb") as handle:
        from_line: bytes | None = None
        from_at = 0  # line number of from_line
        lines: list[bytes] = []
        previous_blank = True
        for line_number, line in enumerate(handle, 1):
            if line.startswith(b"From ") and previous_blank:
                if from_line is not None:
                    number += 1
                    yield _mbox_message(from_line, lines, number, variant, f"{path} line {from_at}")
                from_line, from_at, lines = line, line_number, []
                previous_blank = False
                continue
            previous_blank = line in _BLANK
            if from_line is None:
                if line.strip():
                    raise ValueError(f"{path}: not an mbox file (no 'From ' line first)")
                continue
            lines.append(line)
        if from_line is None:
            return
        where = f"{path} line {from_at}"
        if not lines or lines[-1] not in _BLANK:
            reason = "the file ends inside this message (no empty line after it, RFC 4155)"
            yield NotImported(where, reason)
            return
        yield _mbox_message(from_line, lines, number + 1, variant, where)


def _mbox_message(
    from_line: bytes, lines: list[bytes], number: int, variant: MboxVariant, where: str
) -> SourceMessage:
    if lines and lines[-1] in _BLANK:
        lines.pop()  # the separator line mbox writers put after each message
    raw = unquote_from(b"".join(lines), variant)
    status = _STATUS.search(_headers(raw))
    return SourceMessage(
        raw=raw,
        name=str(number),
        number=number,
        uidl=x_uidl(raw),
        received_at=_from_line_time(from_line) or _date_header(raw),
        retrieved=status is not None and b"R" in status[1].upper(),
        location=where,
    )


def read_maildir(path: Path, uidl_format: str = DEFAULT_DOVECOT_FORMAT) -> Iterator[SourceItem]:
    """The messages in ``new/`` and ``cur/`` of the Maildir at ``path``.

    Order: Dovecot's uid order when ``dovecot-uidlist`` lists the file, then the rest by
    file name (which begins with the delivery time).  A message in ``cur/`` with the
    "S" (seen) flag counts as retrieved.  The old unique-id is the one Dovecot served
    (``dovecot-uidlist``) or else the message's ``X-UIDL:`` header.  Names beginning
    with "." are no messages (the Maildir convention); every other entry that is not a
    readable regular file (or a link to one) is ``NotImported``, before the messages.
    """
    for sub in ("new", "cur"):
        if not (path / sub).is_dir():
            raise ValueError(f"{path}: not a Maildir (no {sub}/ folder)")
    uidlist_path = path / "dovecot-uidlist"
    uidlist = read_dovecot_uidlist(uidlist_path) if uidlist_path.is_file() else None
    files = yield from _message_files(
        entry for sub in ("new", "cur") for entry in (path / sub).iterdir()
    )

    def order(entry: Path) -> tuple[int, str]:
        uid = uidlist.uid(_base(entry.name)) if uidlist else None
        return (uid if uid is not None else 2**63, entry.name)

    for number, entry in enumerate(sorted(files, key=order), 1):
        raw = yield from _read(entry)
        if raw is None:
            continue
        base = _base(entry.name)
        flags = _MAILDIR_FLAGS.search(entry.name)
        listed = uidlist.uidl(base, uidl_format) if uidlist else None
        yield SourceMessage(
            raw=raw,
            name=base,
            number=number,
            uidl=listed if listed is not None else x_uidl(raw),
            received_at=_mtime(entry),
            retrieved=entry.parent.name == "cur" and flags is not None and "S" in flags[1],
            location=str(entry),
        )


def _base(filename: str) -> str:
    # "1700000000.M1P2.host,S=123:2,RS" -> "1700000000.M1P2.host,S=123"
    return filename.split(":", 1)[0]


def read_eml_folder(path: Path) -> Iterator[SourceItem]:
    """Every ``*.eml`` file in the folder at ``path``, by name; none count as retrieved.

    An ``*.eml`` entry that is not a readable regular file is ``NotImported``.
    """
    if not path.is_dir():
        raise ValueError(f"{path}: not a folder")
    files = yield from _message_files(p for p in path.iterdir() if p.suffix.lower() == ".eml")
    for number, entry in enumerate(sorted(files), 1):
        raw = yield from _read(entry)
        if raw is None:
            continue
        yield SourceMessage(
            raw=raw,
            name=entry.name,
            number=number,
            uidl=x_uidl(raw),
            received_at=_date_header(raw) or _mtime(entry),
            retrieved=False,
            location=str(entry),
        )


def _message_files(entries: Iterable[Path]) -> Generator[NotImported, None, list[Path]]:
    """Yield what is not a message file among ``entries``, by name; return the rest."""
    files: list[Path] = []
    for entry in sorted(entry for entry in entries if not entry.name.startswith(".")):
        problem = _not_a_message_file(entry)
        if problem is None:
            files.append(entry)
        else:
            yield NotImported(str(entry), problem)
    return files


def _not_a_message_file(entry: Path) -> str | None:
    """Why ``entry`` cannot hold a message, or None for a regular file (or a link to one)."""
    try:
        mode = entry.stat().st_mode  # follows a symbolic link
    except FileNotFoundError:
        if entry.is_symlink():
            return f"a symbolic link to {str(entry.readlink())!r}, which does not exist"
        return "removed while the import read the folder"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory, not a message file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "a device")
    return f"{kind}, not a message file"


def _read(entry: Path) -> Generator[NotImported, None, bytes | None]:
    """The octets of ``entry``; when they cannot be read, yield why and return None."""
    try:
        return entry.read_bytes()
    except OSError as exc:
        yield NotImported(str(entry), f"cannot be read: {exc.strerror}")
        return None


def _mtime(entry: Path) -> float | None:
    try:
        return entry.stat().st_mtime
    except OSError:
        return None
