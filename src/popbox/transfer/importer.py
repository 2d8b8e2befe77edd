"""Importing a source's messages into one mailbox: batched, resumable, UIDL-keeping.

Theory of operation: the source is read twice.  The first pass counts the messages (for
the progress bar) and, with ``keep_uidl``, finds the highest numeric unique-id among
them; the store raises the mailbox's uid counter past it before the first message goes
in, so no uid popbox gives out later (to an imported message without a unique-id, or to
a new delivery) can show the same unique-id as an imported one (C0008, C0009).

The second pass prepares each message (C0011 normalisation) and stores them in batches,
each one transaction (``transfer.batches``, shared with ``pop3_import``).  Every message
carries an import key, the SHA-256 of its octets plus how many identical messages came
before it in the source, and the store records the key in the same transaction as the
message.  After an
interruption (Ctrl-C, kill -9, a full disk) the batch in flight is rolled back whole, and
running the same import again skips every message already committed: nothing is lost,
nothing is stored twice, no message is ever half-visible.

Unique-ids are kept only when they are valid (RFC 1939 s7), unique in the source, and
not already shown by another message of the mailbox; otherwise the message still goes
in, with a new unique-id, and the report says so.

Nothing is dropped or altered silently: what the source says is no whole message
(``sources.NotImported``), an empty message (no octets but white space: an empty file is
no mail) and one that C0011 refuses are listed in ``ImportReport.not_imported`` by
where they are, and such an import is not ``complete``.  Running the import again once
the source is repaired adds exactly those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.store.base import UnknownUser
from popbox.store.message import MalformedMessage, prepare
from popbox.transfer.batches import ImportBatches
from popbox.transfer.sources import NotImported, SourceMessage
from popbox.transfer.uidl import numeric_uid, valid_uidl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from popbox.store.base import MailStore, MessageInfo, NewMessage
    from popbox.transfer.sources import SourceItem

__all__ = ["ImportOptions", "ImportReport", "run_import"]


@dataclass(frozen=True, slots=True)
class ImportOptions:
    keep_uidl: bool = False
    uidl_map: Mapping[str, str] = field(default_factory=dict)  # --uidl-map: key -> uidl
    batch_messages: int = 500  # messages per transaction
    batch_octets: int = 16 * 1024 * 1024  # ... and at most about this many octets


@dataclass(slots=True)
class ImportReport:
    total: int = 0  # messages in the source
    imported: int = 0  # stored by this run
    already: int = 0  # stored by an earlier run of the same import: skipped
    kept_uidl: int = 0  # imported with their old unique-id
    octets: int = 0  # exact size of what this run stored
    uids_above: int = 0  # the uid counter was raised past this
    problems: list[str] = field(default_factory=list)  # imported, but with a new unique-id
    not_imported: list[NotImported] = field(default_factory=list)  # what is not in the mailbox

    @property
    def complete(self) -> bool:
        """Whether everything the source holds is in the mailbox now (exit status 0)."""
        return not self.not_imported and self.imported + self.already == self.total


async def run_import(
    store: MailStore,
    name: str,
    source: Callable[[], Iterator[SourceItem]],
    options: ImportOptions,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import every message ``source()`` yields into ``name``'s mailbox; see module docs.

    ``progress(done, total)`` is called as messages are handled.  Raises
    ``UnknownUser``, ``StoreError`` (the batches committed before it stay: run again to
    resume) and ``ValueError``/``OSError`` for a source that cannot be read.
    """
    if await store.get_user(name) is None:
        raise UnknownUser(f"no such user {name!r}")
    report = ImportReport()
    for message in source():
        if not isinstance(message, SourceMessage):
            continue  # reported by the second pass
        report.total += 1
        uidl = _source_uidl(message, options) if options.keep_uidl else None
        number = numeric_uid(uidl) if uidl else None
        if number is not None:
            report.uids_above = max(report.uids_above, number)
    shown = {info.uidl: info.uid for info in await store.snapshot(name)}
    run = _Run(store, name, options, report, shown)
    done = 0
    for item in source():
        if isinstance(item, NotImported):
            report.not_imported.append(item)
            continue
        await run.add(item)
        done += 1
        if progress is not None:
            progress(done, report.total)
    await run.batches.flush()
    return report


def _source_uidl(message: SourceMessage, options: ImportOptions) -> str | None:
    mapped = options.uidl_map.get(message.name) or options.uidl_map.get(str(message.number))
    return mapped if mapped is not None else message.uidl


class _Run:
    """The running state of one import: the open batch and what has been seen."""

    def __init__(
        self,
        store: MailStore,
        name: str,
        options: ImportOptions,
        report: ImportReport,
        shown: dict[str, int],
    ) -> None:
        self.store = store
        self.name = name
        self.options = options
        self.report = report
        self.shown = shown  # unique-id -> uid of every message in the mailbox
        self.seen_uidls: set[str] = set()
        self.seen_hashes: dict[bytes, int] = {}
        self.batches = ImportBatches(
            store,
            name,
            messages=options.batch_messages,
            octets=options.batch_octets,
            uids_above=report.uids_above,
            stored=self._stored,
        )

    async def add(self, message: SourceMessage) -> None:
        # Counted for every message, skipped or not, so that the n-th copy of identical
        # octets has the same key in every run of the import.
        digest = hashlib.sha256(message.raw).digest()
        occurrence = self.seen_hashes.get(digest, 0)
        self.seen_hashes[digest] = occurrence + 1
        new = await self._prepare(message)
        if new is None:
            return
        key = f"sha256:{digest.hex()}:{occurrence}"
        await self.batches.add(dataclasses.replace(new, import_key=key))

    async def _prepare(self, message: SourceMessage) -> NewMessage | None:
        """The message ready to store, or None when it is skipped (and reported)."""
        report = self.report
        where = f"message {message.number} ({message.location or message.name})"
        if not message.raw.strip():
            report.not_imported.append(NotImported(where, "empty: no message in it"))
            return None
        uidl = _source_uidl(message, self.options) if self.options.keep_uidl else None
        if uidl is not None and not valid_uidl(uidl):
            report.problems.append(f"{where}: {uidl!r} is not a valid unique-id; given a new one")
            uidl = None
        if uidl is not None and uidl in self.seen_uidls:
            report.problems.append(f"{where}: unique-id {uidl!r} repeats; given a new one")
            uidl = None
        received = message.received_at
        try:
            new = prepare(message.raw, legacy_uidl=uidl, received_at=received)
        except MalformedMessage as exc:
            report.not_imported.append(NotImported(where, str(exc)))
            return None
        if uidl is not None:
            self.seen_uidls.add(uidl)
            if uidl in self.shown:
                # Shown by a message of the mailbox already: this very message, stored
                # by an earlier run, or another one, whose unique-id must stay unique.
                if await self.store.fetch(self.name, self.shown[uidl]) == new.wire:
                    report.already += 1
                    return None
                report.problems.append(f"{where}: unique-id {uidl!r} is taken; given a new one")
                new = dataclasses.replace(new, legacy_uidl=None)
        if message.retrieved:
            retrieved_at = received if received is not None else time.time()
            new = dataclasses.replace(new, retrieved_at=retrieved_at)
        return new

    def _stored(self, batch: Sequence[NewMessage], stored: Sequence[MessageInfo]) -> None:
        report = self.report
        report.imported += len(stored)
        report.already += len(batch) - len(stored)
        for info in stored:
            report.octets += info.size
            report.kept_uidl += info.legacy_uidl is not None
            self.shown[info.uidl] = info.uid
