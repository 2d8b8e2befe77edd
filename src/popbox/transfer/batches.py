"""Storing an import's messages in batches, one transaction each, while the next fills.

Every importer (``importer``: mbox, Maildir, .eml; ``pop3_import``: a POP3 server)
hands its prepared messages to one ``ImportBatches``.  A batch is stored when it holds
``messages`` messages or about ``octets`` octets, by ``MailStore.import_messages``
(SQLite and PostgreSQL commit off the event loop), and while it commits the importer
goes on reading and preparing the next one: the import waits on its source, not on the
disk.  At most one batch is in flight, so memory holds two batches at the most (a
spooled message counts as its length toward ``octets`` but stays in its file).

``stored(batch, infos)`` is called once a batch has committed, with what the store
added (messages whose import key an earlier run recorded are left out of ``infos``);
the spooled messages of a batch are closed once it is stored or has failed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from popbox.store.spooled import SpooledWire

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from popbox.store.base import MailStore, MessageInfo, NewMessage

__all__ = ["ImportBatches"]


class ImportBatches:
    """See module docs; ``flush`` at the end, on success and failure alike."""

    def __init__(  # noqa: PLR0913 - where to, how much at a time, and what to tell
        self,
        store: MailStore,
        name: str,
        *,
        messages: int,
        octets: int,
        uids_above: int,
        stored: Callable[[Sequence[NewMessage], Sequence[MessageInfo]], None],
    ) -> None:
        self._store = store
        self._name = name
        self._limits = (messages, octets)
        self.uids_above = uids_above  # C0008: the uids given out start above this
        self._stored = stored
        self._batch: list[NewMessage] = []
        self._octets = 0
        self._in_flight: asyncio.Task[None] | None = None

    async def add(self, message: NewMessage) -> None:
        """Batch ``message``; when the batch is full, start storing it."""
        self._batch.append(message)
        self._octets += len(message.wire)
        messages, octets = self._limits
        if len(self._batch) >= messages or self._octets >= octets:
            try:
                await self._settle()
            except BaseException:
                # Nothing after a batch that failed: it would take uids before it.
                _close_spooled(self._take())
                raise
            self._in_flight = asyncio.create_task(self._store_batch(self._take()))

    async def flush(self) -> None:
        """Store everything added; returns when it is committed (or raises why not)."""
        try:
            await self._settle()
            batch = self._take()
            if batch:
                await self._store_batch(batch)
        finally:
            _close_spooled(self._take())

    def _take(self) -> list[NewMessage]:
        batch, self._batch, self._octets = self._batch, [], 0
        return batch

    async def _settle(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task

    async def _store_batch(self, batch: list[NewMessage]) -> None:
        try:
            infos = await self._store.import_messages(self._name, batch, uids_above=self.uids_above)
        finally:
            _close_spooled(batch)
        self._stored(batch, infos)


def _close_spooled(batch: Sequence[NewMessage]) -> None:
    for message in batch:
        if isinstance(message.wire, SpooledWire):
            message.wire.close()
