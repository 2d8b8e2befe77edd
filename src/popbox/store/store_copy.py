"""Copying every user and message from one store to another, keeping unique-ids.

Theory of operation: clients that leave mail on the server remember the UIDLs they have
seen, so a store migration must keep each message's uid (and legacy unique-id string)
exactly, and must carry each mailbox's uid counter over too: if the newest messages
were deleted before the move, a counter rebuilt from the highest surviving uid would
hand those deleted uids out again, and a client that still remembers one of them would
never download the new message (C0008).  The ``MailStore`` contract only assigns uids
at delivery, so copying goes through two optional capabilities:

* ``MailboxExporter.export_state`` on the source, for what the contract has no reader
  for: the counter, first-retrieval times (retention, E0005), the quota-warning flag
  (E0004) and the keys of past imports (so re-running an old import stays a no-op);
* ``MailboxImporter.import_mailbox`` on the target, which stores a user and all of their
  messages with the uids given, in one transaction.

Every backend here exports (``PostgresStore``, ``SqliteStore``, ``MemoryStore``); only
``PostgresStore`` imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from popbox.store.base import MessageInfo, UserExists, UserRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from popbox.store.base import MailStore

__all__ = [
    "ImportedMessage",
    "MailboxExporter",
    "MailboxImporter",
    "MailboxState",
    "copy_store",
]


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """One message as the source holds it, to be stored under the same uid."""

    info: MessageInfo  # uid, sizes, received time and legacy unique-id, kept as they are
    wire: bytes


@dataclass(frozen=True, slots=True)
class MailboxState:
    """What a mailbox holds besides its users row and its messages' ``MessageInfo``."""

    next_uid: int  # the counter: at least one more than every uid ever given out
    retrieved_at: Mapping[int, float] = field(default_factory=dict)  # uid -> first RETR
    quota_warned: bool = False
    import_keys: frozenset[str] = frozenset()


@runtime_checkable
class MailboxExporter(Protocol):
    async def export_state(self, name: str) -> MailboxState:
        """``name``'s mailbox state, read consistently.  Raises ``UnknownUser``."""


@runtime_checkable
class MailboxImporter(Protocol):
    async def import_mailbox(
        self, user: UserRecord, messages: AsyncIterator[ImportedMessage], *, state: MailboxState
    ) -> int:
        """Create ``user`` holding ``messages`` with their own uids and ``state``, all or nothing.

        The counter becomes ``state.next_uid`` or one more than the highest uid, whichever
        is larger.  Raises ``UserExists``; returns how many messages were stored.
        """


async def copy_store(
    source: MailStore,
    target: MailStore,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Copy every user of ``source`` with their mail into ``target``; return the message count.

    Users keep their verifiers and quota; messages keep uid, both sizes, received and
    first-retrieved times, legacy unique-id and wire bytes; mailboxes keep their uid
    counter, quota-warning flag and import keys.  Each user arrives in ``target`` whole
    or not at all, and ``progress``, if given, is called with the user's name and
    message count after each one.

    Deliveries to ``source`` during the copy may be missed, so stop them first (an MTA
    queues and retries).  Raises ``UserExists``, before writing anything, if ``target``
    already has one of the users, and ``TypeError`` if ``target`` cannot store messages
    under given uids.
    """
    if not isinstance(target, MailboxImporter):
        raise TypeError(f"{type(target).__name__} cannot import mailboxes with their uids")
    users = await source.list_users()
    for user in users:
        if await target.get_user(user.name) is not None:
            raise UserExists(f"user {user.name!r} already exists in the target store")
    total = 0
    for user in users:
        listed = await source.snapshot(user.name)
        state = await _export_state(source, user.name, listed)
        messages = _messages(source, user.name, listed)
        copied = await target.import_mailbox(user, messages, state=state)
        total += copied
        if progress is not None:
            progress(user.name, copied)
    return total


async def _messages(
    source: MailStore, name: str, listed: Sequence[MessageInfo]
) -> AsyncIterator[ImportedMessage]:
    # One body at a time: the importer decides how many to hold before writing.
    for info in listed:
        wire = await source.fetch(name, info.uid)
        if wire is not None:  # None: deleted since the snapshot, so nothing to keep
            yield ImportedMessage(info=info, wire=wire)


async def _export_state(
    source: MailStore, name: str, listed: Sequence[MessageInfo]
) -> MailboxState:
    if isinstance(source, MailboxExporter):
        return await source.export_state(name)
    # An unknown backend: the best lower bound the contract allows; the importer also
    # never sets a counter below one more than the highest uid it stores.
    return MailboxState(next_uid=max((info.uid for info in listed), default=0) + 1)
