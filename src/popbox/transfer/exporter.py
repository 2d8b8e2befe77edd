"""Exporting a mailbox as an mbox file or a Maildir, keeping what a re-import needs.

Messages are written as POP3 RETR sends them (byte-stuffing undone), with Unix line
ends, which is what both formats expect; a re-import turns them back into CRLF, so an
export followed by an import gives back the same octets.

* mbox (mboxrd quoting, RFC 4155 framing): every ``>*From `` line of a message gets one
  more ">", so any mbox reader of the rd variant gets the message back exactly.  The
  unique-ids go into ``PATH.uidl.csv`` (``number,uidl``), for ``popbox import mbox ...
  --keep-uidl --uidl-map PATH.uidl.csv``.
* Maildir: one file per message in ``new/``, written to ``tmp/`` and renamed (the
  Maildir delivery protocol), and a ``dovecot-uidlist`` whose ``P`` fields carry each
  message's POP3 unique-id, which both ``popbox import maildir --keep-uidl`` and
  Dovecot itself read.

The export is a consistent snapshot of the mailbox; messages removed while it runs are
left out.  Nothing is overwritten: the target must not exist yet.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from popbox.store.base import UnknownUser
from popbox.store.message import unstuff

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.store.base import MailStore, MessageInfo

__all__ = ["ExportReport", "export_maildir", "export_mbox"]

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<([^>\s]*)>", re.IGNORECASE | re.MULTILINE)


@dataclass(slots=True)
class ExportReport:
    messages: int = 0
    octets: int = 0


def _text(wire: bytes) -> bytes:
    return unstuff(wire).replace(b"\r\n", b"\n")


async def _messages(store: MailStore, name: str) -> list[MessageInfo]:
    if await store.get_user(name) is None:
        raise UnknownUser(f"no such user {name!r}")
    return list(await store.snapshot(name))


def _from_line(text: bytes, received_at: float) -> bytes:
    header_end = text.find(b"\n\n")
    match = _RETURN_PATH.search(text, 0, header_end if header_end >= 0 else len(text))
    sender = match[1].decode("ascii", "replace") if match and match[1] else "MAILER-DAEMON"
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(received_at))
    return f"From {sender} {stamp}\n".encode()


async def export_mbox(store: MailStore, name: str, path: Path) -> ExportReport:
    """Write ``name``'s mailbox to a new mboxrd file at ``path`` (and its uidl map)."""
    infos = await _messages(store, name)
    report = ExportReport()
    uidl_map = path.with_name(path.name + ".uidl.csv")
    with path.open("xb") as mbox, uidl_map.open("x", encoding="ascii") as csv:
        csv.write("number,uidl\n")
        for info in infos:
            wire = await store.fetch(name, info.uid)
            if wire is None:
                continue  # removed since the snapshot
            text = _text(wire)
            mbox.write(_from_line(text, info.received_at))
            mbox.write(_FROM_LINE.sub(rb">\1", text))
            mbox.write(b"\n")  # the empty line that separates messages
            report.messages += 1
            report.octets += info.size
            csv.write(f"{report.messages},{info.uidl}\n")
        mbox.flush()
        os.fsync(mbox.fileno())
    return report


async def export_maildir(store: MailStore, name: str, path: Path) -> ExportReport:
    """Write ``name``'s mailbox to a new Maildir at ``path`` with a ``dovecot-uidlist``."""
    infos = await _messages(store, name)
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=sub != "tmp")
    report = ExportReport()
    records = []
    host = os.uname().nodename.replace("/", "_").replace(":", "_")
    for info in infos:
        wire = await store.fetch(name, info.uid)
        if wire is None:
            continue
        base = f"{int(info.received_at)}.M{info.uid}P{os.getpid()}.{host},S={info.size}"
        temporary = path / "tmp" / base
        with temporary.open("xb") as handle:
            handle.write(_text(wire))
            handle.flush()
            os.fsync(handle.fileno())
        os.utime(temporary, (info.received_at, info.received_at))
        temporary.rename(path / "new" / base)
        report.messages += 1
        report.octets += info.size
        records.append(f"{report.messages} P{info.uidl} :{base}\n")
    uidvalidity = int(time.time())
    header = f"3 V{uidvalidity} N{report.messages + 1}\n"
    (path / "dovecot-uidlist").write_text(header + "".join(records), encoding="utf-8")
    return report
