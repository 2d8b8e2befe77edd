"""Importing one mailbox from a running POP3 server, keeping every unique-id (C0009).

Theory of operation: one session with the source.  UIDL and LIST are asked once; the
messages are then retrieved with RETR in message-number order and stored in batches, each
one transaction (``MailStore.import_messages``), so they keep the source's order and get
popbox uids above everything already in the mailbox.  Nothing is ever deleted at the
source: the client has no DELE, and QUIT ends a session in which nothing was marked.

Resuming: a message whose source unique-id a message of the mailbox already shows as its
legacy UIDL was imported before and is not even retrieved.  Every stored message carries
an import key (``pop3_listing``: its unique-id, or a hash of its header section when the
source gives it none), which ``import_messages`` records once per mailbox, so nothing is
stored twice whatever stopped the run before.  When the connection breaks or the source
answers ``-ERR`` to a RETR, the run stops there (skipping the message would store the
rest out of the source's order): what was retrieved is stored, the report says where it
stopped, and the next run continues from there.

The mailbox's quota (E0003) applies unless the operator says otherwise: when the next
message does not fit, the run stops there as above, and the report says how far it got.

Memory: two batches (the one filling, the one committing: ``transfer.batches``; each
at most about ``batch_octets``) and the listing; never the mailbox.  A RETR answer larger
than a megabyte goes to a temporary file in ``spool_dir`` as it arrives and from there,
piece by piece, into the store (``store.spooled``), so memory does not grow with the
size of a message either.  A message larger than ``max_message_size`` (by LIST) is not
retrieved.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.delivery.quota import effective_quota
from popbox.store.base import UnknownUser
from popbox.store.message import MalformedMessage, prepare_stuffed
from popbox.store.spooled import SpooledWire
from popbox.transfer.batches import ImportBatches
from popbox.transfer.pop3_client import Pop3Client, SourceError
from popbox.transfer.pop3_listing import header_key, plan_entries, uidl_key
from popbox.transfer.uidl import numeric_uid

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from popbox.config import QuotaConfig
    from popbox.store.base import MailStore, MessageInfo, NewMessage
    from popbox.transfer.pop3_client import Credentials, Pop3Url
    from popbox.transfer.pop3_listing import Entry

__all__ = [
    "Pop3Import",
    "Pop3ImportReport",
    "Pop3Source",
    "QuotaReached",
    "import_pop3",
    "open_source",
]

_RECEIVED_DATE = re.compile(
    rb"^Received:[^\r]*(?:\r\n[ \t][^\r]*)*;\s*([^\r]+)", re.IGNORECASE | re.MULTILINE
)
_DATE = re.compile(rb"^Date:[ \t]*([^\r]+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Pop3Source:
    """Where to import from and how to log in there."""

    url: Pop3Url
    credentials: Credentials
    tls: ssl.SSLContext
    allow_plaintext: bool = False
    timeout: float = 60.0


class QuotaReached(Exception):
    """The next message would take the mailbox over its quota: the run stops there."""


@dataclass(frozen=True, slots=True)
class Pop3Import:
    max_message_size: int = 50 * 1024 * 1024  # larger messages are reported, not fetched
    quota: QuotaConfig | None = None  # the server's quotas apply (E0003); None: ignored
    # Small enough that the last batch, the one nothing overlaps, is quickly committed.
    batch_messages: int = 100  # messages per transaction
    batch_octets: int = 4 * 1024 * 1024  # ... and at most about this many octets
    spool_dir: Path | None = None  # large answers wait here (None: the system's temp dir)


@dataclass(slots=True)
class Pop3ImportReport:
    total: int = 0  # messages the source lists
    total_octets: int = 0  # their LIST sizes summed
    imported: int = 0  # stored by this run
    already: int = 0  # stored by an earlier run: skipped
    kept_uidl: int = 0  # stored with their source unique-id
    octets: int = 0  # exact size of what this run stored
    done: int = 0  # messages handled so far, stored or not
    retrieved_octets: int = 0  # RETR octets received so far
    no_uidl: bool = False  # the source does not answer UIDL
    not_imported: int = 0  # refused (too large, -ERR, malformed): see problems
    stopped: str | None = None  # why the run ended before the last message
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every source message is in the mailbox now."""
        return self.stopped is None and self.imported + self.already == self.total


async def open_source(source: Pop3Source, max_message_size: int) -> Pop3Client:
    """A logged-in session with the source; ``SourceError`` naming what failed."""
    client = await Pop3Client.connect(
        source.url,
        source.tls,
        allow_plaintext=source.allow_plaintext,
        io_timeout=source.timeout,
        max_message_size=max_message_size,
    )
    try:
        await client.login(source.credentials)
    except BaseException:
        client.close()
        raise
    return client


async def import_pop3(
    store: MailStore,
    name: str,
    source: Pop3Source,
    options: Pop3Import,
    progress: Callable[[Pop3ImportReport], None] | None = None,
) -> Pop3ImportReport:
    """Import the source mailbox into ``name``'s (module docs).

    Raises ``UnknownUser``, ``SourceError`` when nothing could be read (no connection,
    login refused, malformed listing) and ``StoreError``; a source lost mid-run is not
    raised but reported in ``stopped``.
    """
    user = await store.get_user(name)
    if user is None:
        raise UnknownUser(f"no such user {name!r}")
    quota = None if options.quota is None else effective_quota(user, options.quota)
    client = await open_source(source, options.max_message_size)
    report = Pop3ImportReport()
    try:
        uidls = await client.uidl()
        sizes = await client.list_sizes()
        entries, report.problems = plan_entries(sizes, uidls)
        report.no_uidl = uidls is None
        report.total = len(entries)
        report.total_octets = sum(entry.size for entry in entries)
        run = _Run(store, name, options, report)
        if quota is not None:
            run.room = quota - await store.usage(name)
        await run.prepare_mailbox(entries)
        wanted = run.to_retrieve(entries)
        by_number = {entry.number: entry for entry in wanted}
        report.done = report.total - len(wanted)
        try:
            async for number, wire in client.retrieve(list(by_number), options.spool_dir):
                await run.add(by_number[number], wire)
                report.done += 1
                report.retrieved_octets += len(wire)
                if progress is not None:
                    progress(report)
        except (SourceError, QuotaReached) as exc:
            # The session cannot go on (lost, -ERR, an answer that cannot be read, the
            # quota): what was retrieved is stored below; the next run continues there.
            report.stopped = f"{exc}; run again to continue"
        finally:
            await run.batches.flush()
    finally:
        await client.quit()
    return report


class _Run:
    """The running state of one import: what the mailbox shows, the open batch."""

    def __init__(
        self,
        store: MailStore,
        name: str,
        options: Pop3Import,
        report: Pop3ImportReport,
    ) -> None:
        self.store = store
        self.name = name
        self.options = options
        self.report = report
        self.legacy: set[str] = set()  # legacy unique-ids the mailbox shows
        self.native: set[str] = set()  # popbox's own unique-ids it shows
        self.headers_seen: dict[bytes, int] = {}
        self.room: int | None = None  # octets the quota leaves; None: no quota applies
        self.batches = ImportBatches(
            store,
            name,
            messages=options.batch_messages,
            octets=options.batch_octets,
            uids_above=0,
            stored=self._stored,
        )

    async def prepare_mailbox(self, entries: list[Entry]) -> None:
        for info in await self.store.snapshot(self.name):
            if info.legacy_uidl is None:
                self.native.add(info.uidl)
            else:
                self.legacy.add(info.legacy_uidl)
        # C0008: no uid popbox gives out later may show an imported numeric unique-id.
        numbers = (numeric_uid(entry.uidl) for entry in entries if entry.uidl)
        self.batches.uids_above = max((n for n in numbers if n is not None), default=0)

    def to_retrieve(self, entries: list[Entry]) -> list[Entry]:
        """The entries still to import; the others are counted and reported here."""
        wanted = []
        for entry in entries:
            if entry.uidl is not None and entry.uidl in self.legacy:
                self.report.already += 1
            elif entry.size > self.options.max_message_size:
                self._refuse(entry, f"{entry.size} octets, over max_message_size; not retrieved")
            else:
                wanted.append(entry)
        return wanted

    async def add(self, entry: Entry, wire: bytes | SpooledWire) -> None:
        """Batch one RETR answer (still byte-stuffed) for storing; it owns ``wire`` now."""
        try:
            new = self._prepare(entry, wire)
            if new is not None:
                self._take_room(entry, new)
        except BaseException:
            _release(wire)
            raise
        if new is None or new.wire is not wire:
            _release(wire)  # not stored, or stored as rewritten (prepare_stuffed)
        if new is not None:
            await self.batches.add(new)

    def _take_room(self, entry: Entry, new: NewMessage) -> None:
        if self.room is None:
            return
        if new.size > self.room:
            raise QuotaReached(
                f"the mailbox quota is reached: message {entry.number} ({new.size} octets)"
                f" does not fit in the {max(self.room, 0)} octets left"
            )
        self.room -= new.size

    def _prepare(self, entry: Entry, wire: bytes | SpooledWire) -> NewMessage | None:
        uidl = entry.uidl
        if uidl is not None and uidl in self.native:
            self.report.problems.append(
                f"message {entry.number}: unique-id {uidl!r} is popbox's own for another"
                " message of the mailbox; given a new one"
            )
            uidl = None
        head = wire.head if isinstance(wire, SpooledWire) else wire
        try:
            new = prepare_stuffed(wire, legacy_uidl=uidl, received_at=_received_at(head))
        except MalformedMessage as exc:
            self._refuse(entry, f"not imported: {exc}")
            return None
        key = uidl_key(entry.uidl) if entry.uidl else header_key(head, self.headers_seen)
        return dataclasses.replace(new, import_key=key)

    def _refuse(self, entry: Entry, why: str) -> None:
        self.report.not_imported += 1
        self.report.problems.append(f"message {entry.number}: {why}")

    def _stored(self, batch: Sequence[NewMessage], stored: Sequence[MessageInfo]) -> None:
        report = self.report
        report.imported += len(stored)
        report.already += len(batch) - len(stored)
        for info in stored:
            report.octets += info.size
            if info.legacy_uidl is not None:
                report.kept_uidl += 1
                self.legacy.add(info.legacy_uidl)


def _release(wire: bytes | SpooledWire) -> None:
    if isinstance(wire, SpooledWire):
        wire.close()


def _received_at(raw: bytes) -> float | None:
    """When the source received it: the newest Received: header's date, else Date:."""
    end = raw.find(b"\r\n\r\n")
    headers = raw[: end + 2] if end >= 0 else raw
    for pattern in (_RECEIVED_DATE, _DATE):
        match = pattern.search(headers)
        if match is not None:
            try:
                return email.utils.parsedate_to_datetime(match[1].decode("latin-1")).timestamp()
            except (TypeError, ValueError, IndexError):
                continue
    return None
