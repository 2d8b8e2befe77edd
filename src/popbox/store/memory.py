"""An in-memory ``MailStore`` for tests and ``popbox.protocol.testing``.

It keeps the semantics of the real backends (the same contract tests run against it):
uids come from a per-user counter that is never decremented, deliveries are checked
against the quota before anything is stored, deletion is all-or-nothing, and the
maildrop lock is a lease measured with an injectable clock.  Every method completes
without awaiting, so under asyncio each call is atomic, as a database transaction is.

Unlike the real backends, ``open()`` is optional: a fresh ``MemoryStore`` is usable at
once, which keeps protocol tests short.  After ``close()`` every call raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.store.base import (
    DeliveryRefused,
    MaildropLocked,
    MessageInfo,
    NewMessage,
    RefusalReason,
    UnknownUser,
    UserExists,
    UserRecord,
    assign_uids,
)
from popbox.store.spooled import wire_octets
from popbox.store.store_copy import MailboxState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from popbox.store.admin_records import TokenRecord

__all__ = ["MemoryMaildrop", "MemoryStore"]


@dataclass(slots=True)
class _Stored:
    info: MessageInfo
    wire: bytes
    retrieved_at: float | None = None


@dataclass(slots=True)
class _Lock:
    owner: str
    expires: float


@dataclass(slots=True)
class _Mailbox:
    verifiers: dict[str, str]
    quota: int | None
    disabled_reason: str | None = None
    next_uid: int = 1
    quota_warned: bool = False
    import_keys: set[str] = field(default_factory=set)
    delivery_keys: dict[str, tuple[int, float]] = field(default_factory=dict)  # uid, when
    # Uids are handed out in increasing order and appended, so insertion order is uid
    # order: snapshot() needs no sort.
    messages: dict[int, _Stored] = field(default_factory=dict)
    lock: _Lock | None = None


class MemoryStore:
    """A ``MailStore`` that keeps everything in process memory.

    ``clock`` returns POSIX seconds; tests pass a fake one to expire lock leases and to
    control default ``received_at`` values.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._users: dict[str, _Mailbox] = {}
        self._closed = False
        self.admin = MemoryAdminRecords()

    async def open(self) -> None:
        """Nothing to connect to; present for the contract."""
        self._check_open()

    async def close(self) -> None:
        """Drop every user and message; later calls raise ``RuntimeError``."""
        self._closed = True
        self._users.clear()

    # -- users ---------------------------------------------------------------

    async def add_user(
        self, name: str, verifiers: Mapping[str, str], quota: int | None = None
    ) -> None:
        self._check_open()
        if name in self._users:
            raise UserExists(f"user {name!r} already exists")
        self._users[name] = _Mailbox(verifiers=dict(verifiers), quota=quota)

    async def set_verifiers(self, name: str, verifiers: Mapping[str, str]) -> None:
        self._mailbox(name).verifiers = dict(verifiers)

    async def set_quota(self, name: str, quota: int | None) -> None:
        self._mailbox(name).quota = quota

    async def set_disabled(self, name: str, reason: str | None) -> None:
        self._mailbox(name).disabled_reason = reason

    async def delete_user(self, name: str) -> None:
        self._mailbox(name)
        del self._users[name]

    async def get_user(self, name: str) -> UserRecord | None:
        self._check_open()
        mailbox = self._users.get(name)
        return None if mailbox is None else _record(name, mailbox)

    async def find_user(self, name: str) -> UserRecord | None:
        return await self.get_user(name)  # no copy: the users are in this process

    async def list_users(self) -> Sequence[UserRecord]:
        self._check_open()
        return [_record(name, self._users[name]) for name in sorted(self._users)]

    # -- maildrop ------------------------------------------------------------

    async def snapshot(self, name: str) -> Sequence[MessageInfo]:
        return [stored.info for stored in self._mailbox(name).messages.values()]

    async def usage(self, name: str) -> int:
        return sum(stored.info.size for stored in self._mailbox(name).messages.values())

    async def open_maildrop(self, name: str) -> MemoryMaildrop:
        return MemoryMaildrop(self, name, await self.snapshot(name))

    async def fetch(self, name: str, uid: int) -> bytes | None:
        return self.body(name, uid)

    def body(self, name: str, uid: int) -> bytes | None:
        """``fetch`` without the coroutine: a dictionary lookup."""
        self._check_open()
        mailbox = self._users.get(name)
        stored = None if mailbox is None else mailbox.messages.get(uid)
        return None if stored is None else stored.wire

    def commit(self, name: str, deleted: Iterable[int], retrieved: Iterable[int], at: float) -> int:
        """Remove ``deleted`` and stamp ``retrieved`` in one step (no await: atomic)."""
        messages = self._mailbox(name).messages
        for uid in retrieved:
            stored = messages.get(uid)
            if stored is not None and stored.retrieved_at is None:
                stored.retrieved_at = at
        # A set: naming a uid twice must not count it twice.
        gone = {uid for uid in deleted if uid in messages}
        for uid in gone:
            del messages[uid]
        return len(gone)

    async def deliver(
        self,
        name: str,
        message: NewMessage,
        *,
        quota: int | None = None,
        dedup_window: float = 0.0,
    ) -> MessageInfo:
        mailbox = self._mailbox(name)
        key = message.delivery_key
        now = 0.0 if key is None else self._clock()
        if key is not None:
            keys = mailbox.delivery_keys
            for old in [k for k, (_, at) in keys.items() if at < now - dedup_window]:
                del keys[old]
            earlier = keys.get(key)
            if earlier is not None:
                stored = mailbox.messages.get(earlier[0])
                if stored is not None:
                    return stored.info
                return MessageInfo(earlier[0], message.size, len(message.wire), earlier[1])
        if quota is not None:
            used = sum(stored.info.size for stored in mailbox.messages.values())
            if used + message.size > quota:
                raise DeliveryRefused(
                    RefusalReason.OVER_QUOTA,
                    f"mailbox {name!r} is over quota: {used} + {message.size} > {quota} octets",
                )
        info = self._store(mailbox, message)
        if key is not None:
            mailbox.delivery_keys[key] = (info.uid, now)
        return info

    def _store(self, mailbox: _Mailbox, message: NewMessage) -> MessageInfo:
        uid = mailbox.next_uid
        mailbox.next_uid += 1
        [info] = assign_uids([message], uid, self._clock)
        mailbox.messages[uid] = _Stored(
            info=info, wire=wire_octets(message.wire), retrieved_at=message.retrieved_at
        )
        return info

    async def import_messages(
        self, name: str, messages: Sequence[NewMessage], *, uids_above: int = 0
    ) -> Sequence[MessageInfo]:
        mailbox = self._mailbox(name)
        mailbox.next_uid = max(mailbox.next_uid, uids_above + 1)
        stored = []
        for message in messages:
            key = message.import_key
            if key is not None:
                if key in mailbox.import_keys:
                    continue
                mailbox.import_keys.add(key)
            stored.append(self._store(mailbox, message))
        return stored

    async def set_quota_warned(self, name: str, *, warned: bool) -> bool:
        mailbox = self._mailbox(name)
        previous, mailbox.quota_warned = mailbox.quota_warned, warned
        return previous

    async def expire(
        self, name: str, *, retrieved_before: float | None, unretrieved_before: float | None
    ) -> int:
        messages = self._mailbox(name).messages
        due = [
            uid
            for uid, stored in messages.items()
            if _due(stored, retrieved_before, unretrieved_before)
        ]
        for uid in due:
            del messages[uid]
        return len(due)

    async def delete(self, name: str, uids: Iterable[int]) -> int:
        return self.commit(name, uids, (), 0.0)

    async def mark_retrieved(self, name: str, uids: Iterable[int], at: float) -> None:
        self.commit(name, (), uids, at)

    def retrieved_at(self, name: str, uid: int) -> float | None:
        """When ``uid`` was first retrieved, or None; for tests, outside the contract."""
        stored = self._mailbox(name).messages.get(uid)
        return None if stored is None else stored.retrieved_at

    # -- exclusive lock ------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> None:
        mailbox = self._mailbox(name)
        now = self._clock()
        held = mailbox.lock
        if held is not None and held.owner != owner and held.expires > now:
            raise MaildropLocked(f"maildrop {name!r} is locked by another session")
        mailbox.lock = _Lock(owner=owner, expires=now + lease_seconds)

    async def release_lock(self, name: str, owner: str) -> None:
        self._check_open()
        mailbox = self._users.get(name)
        if mailbox is not None and mailbox.lock is not None and mailbox.lock.owner == owner:
            mailbox.lock = None

    # -- store-to-store copy (popbox.store.store_copy) --------------------------

    async def export_state(self, name: str) -> MailboxState:
        """``name``'s counter, retrieval times, quota-warning flag and import keys."""
        mailbox = self._mailbox(name)
        return MailboxState(
            next_uid=mailbox.next_uid,
            retrieved_at={
                uid: stored.retrieved_at
                for uid, stored in mailbox.messages.items()
                if stored.retrieved_at is not None
            },
            quota_warned=mailbox.quota_warned,
            import_keys=frozenset(mailbox.import_keys),
        )

    # -- helpers -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")

    def _mailbox(self, name: str) -> _Mailbox:
        self._check_open()
        mailbox = self._users.get(name)
        if mailbox is None:
            raise UnknownUser(f"no such user {name!r}")
        return mailbox


def _due(stored: _Stored, retrieved_before: float | None, unretrieved_before: float | None) -> bool:
    if stored.retrieved_at is not None:
        return retrieved_before is not None and stored.retrieved_at < retrieved_before
    return unretrieved_before is not None and stored.info.received_at < unretrieved_before


def _record(name: str, mailbox: _Mailbox) -> UserRecord:
    # A copy, so a caller mutating the mapping cannot change the stored verifiers.
    return UserRecord(
        name=name,
        verifiers=dict(mailbox.verifiers),
        quota=mailbox.quota,
        disabled_reason=mailbox.disabled_reason,
    )


class MemoryMaildrop:
    """A session's ``MaildropHandle`` on a ``MemoryStore``: every read is a lookup."""

    __slots__ = ("_name", "_store", "messages")

    def __init__(self, store: MemoryStore, name: str, messages: Sequence[MessageInfo]) -> None:
        self._store = store
        self._name = name
        self.messages = messages

    def body_now(self, uid: int) -> bytes | None:
        return self._store.body(self._name, uid)

    async def body(self, uid: int) -> bytes | None:
        return self._store.body(self._name, uid)

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        return self._store.commit(self._name, deleted, retrieved, at)

    async def close(self) -> None:
        """Nothing is held beyond the snapshot."""


class MemoryAdminRecords:
    """``AdminRecords`` of the in-memory store, in dictionaries of their own."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}

    async def add_token(self, token: TokenRecord) -> None:
        self._tokens[token.id] = token

    async def tokens(self) -> Sequence[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda token: token.created_at)

    async def token_by_digest(self, digest: str) -> TokenRecord | None:
        return next((t for t in self._tokens.values() if t.digest == digest), None)

    async def revoke_token(self, token_id: str) -> bool:
        return self._tokens.pop(token_id, None) is not None
