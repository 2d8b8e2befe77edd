"""The mailbox-store contract every backend implements.

Theory of operation: a store keeps users (with their credential verifiers and quota)
and, per user, a maildrop of messages.  Each message is kept in *wire form*: CRLF line
ends and already dot-stuffed (RFC 1939 section 3), without the terminating ".CRLF", so
RETR is a straight copy.  Its exact RFC 822 size (the octets before stuffing) and its
stored size are computed once, at delivery, by the caller (``popbox.store.message``), and the
store only records them: STAT, LIST and UIDL never read message bodies.

Unique-ids come from a per-mailbox counter that is never decremented (C0007-C0009), so a
deleted message's id is never given out again.  A message imported from another server
may carry a legacy unique-id string that UIDL shows instead of the number.

A session works on one ``MaildropHandle`` (``MailStore.open_maildrop`` at login): the
snapshot, the body reads (a backend's read-ahead lives inside its handle) and UPDATE's
one atomic ``commit``.

Every method may raise ``StoreTemporaryError`` (try again later: the database is down or
busy) or ``StorePermanentError`` (an administrator must act).  The server maps each kind
to exactly one response code in one place (``server/store_errors.py``); nothing else
about the failure reaches a client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from popbox.protocol.message_info import MessageInfo  # re-exported: part of the contract

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from popbox.store.admin_records import AdminRecords
    from popbox.store.spooled import SpooledWire

__all__ = [
    "ARGON2ID_VERIFIER",
    "CommitOutcomeUnknown",
    "DeliveryRefused",
    "MailStore",
    "MaildropHandle",
    "MaildropLocked",
    "MessageInfo",
    "NewMessage",
    "Pending",
    "RefusalReason",
    "StoreError",
    "StorePermanentError",
    "StoreTemporaryError",
    "UnknownUser",
    "UserExists",
    "UserRecord",
    "assign_uids",
]


# Key of the argon2id PHC string in ``UserRecord.verifiers`` (USER/PASS, PLAIN, LOGIN).
ARGON2ID_VERIFIER: Final = "argon2id"


class StoreError(Exception):
    """Base of every error a store raises on purpose."""


class StoreTemporaryError(StoreError):
    """The store cannot answer now (connection lost, database busy); retrying may work."""


class StorePermanentError(StoreError):
    """The store refuses for a reason only an administrator can fix (corruption, schema)."""


class CommitOutcomeUnknown(StoreTemporaryError):
    """A commit was sent but its reply was lost, and the store could not learn, within
    its bound, whether it took effect.  Nothing may be claimed either way."""


class UnknownUser(StoreError):
    """The named user does not exist."""


class UserExists(StoreError):
    """A user with that name already exists."""


class MaildropLocked(StoreError):
    """Another live session holds the maildrop's exclusive lock (``lock_mailbox``)."""


class RefusalReason(enum.Enum):
    OVER_QUOTA = "over_quota"
    UNKNOWN_USER = "unknown_user"


class DeliveryRefused(StoreError):
    """A delivery was refused as a whole; nothing of it was stored."""

    def __init__(self, reason: RefusalReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One account.

    ``verifiers`` maps a scheme name to the stored verifier for it: ``"argon2id"`` (the
    PHC string for USER/PASS and the plaintext SASL mechanisms) and whatever further
    schemes the SASL mechanisms need (``"nt"``, ``"scram-sha-256"``).  The plaintext
    password itself is never stored.
    """

    name: str
    verifiers: Mapping[str, str] = field(default_factory=dict)
    quota: int | None = None  # octets; None inherits the server default (E0003)
    # Set by `popbox user disable`: the account may not log in (mail is still delivered);
    # the text is the reason a login with the right password is told ("" when none).
    disabled_reason: str | None = None


def assign_uids(
    messages: Sequence[NewMessage], first_uid: int, clock: Callable[[], float]
) -> list[MessageInfo]:
    """The ``MessageInfo`` of ``messages`` stored under consecutive uids from ``first_uid``.

    Sizes are the ones computed at delivery (never recomputed); a message without
    ``received_at`` is stamped with ``clock()``.
    """
    return [
        MessageInfo(
            uid=uid,
            size=message.size,
            stored_size=len(message.wire),
            received_at=clock() if message.received_at is None else message.received_at,
            legacy_uidl=message.legacy_uidl,
        )
        for uid, message in enumerate(messages, first_uid)
    ]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message ready to store: wire form plus the sizes computed from it."""

    # CRLF line ends, dot-stuffed, ends with CRLF, no terminating ".CRLF"; a large
    # imported message stays in its file (``spooled``) and is inserted piece by piece.
    wire: bytes | SpooledWire
    size: int  # exact RFC 822 size
    legacy_uidl: str | None = None
    received_at: float | None = None  # None: the store's current time
    retrieved_at: float | None = None  # an imported message already read elsewhere (E0005)
    # An import's name for where the message came from; ``import_messages`` stores a
    # key at most once per mailbox, which makes an interrupted import safe to run again.
    import_key: str | None = None
    # A delivery's name for this copy (recipient and content digest, delivery/agent.py):
    # ``deliver`` recognises a retry of a delivery that committed (``dedup_window``).
    delivery_key: str | None = None


class Pending(enum.Enum):
    """``body_now`` cannot answer without waiting: ``body`` must."""

    FETCH = "fetch"


class MaildropHandle(Protocol):
    """One session's maildrop, from login to UPDATE (``MailStore.open_maildrop``).

    ``messages`` is the snapshot taken at login, in uid order (C0004: it never changes).
    Body reads may be answered from whatever the backend read ahead, but never with the
    body of a message removed after this session's snapshot of it was read (C0004).
    """

    messages: Sequence[MessageInfo]

    def body_now(self, uid: int) -> bytes | Pending | None:
        """``body``'s answer if the handle has it without waiting, else ``Pending.FETCH``.

        A backend whose reads are in memory or in a local file answers small bodies at
        once, so a session can reply to RETR in the callback that read the command;
        one whose reads cross a network always says ``Pending.FETCH``.
        """

    async def body(self, uid: int) -> bytes | None:
        """The wire form of one message, or None if it has been removed since."""

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        """UPDATE in one transaction: remove ``deleted``, stamp ``retrieved`` with ``at``.

        All or nothing (V0006): on return both took effect; on ``StoreError`` neither
        did, except ``CommitOutcomeUnknown``, raised only when the store could not learn
        the outcome within its bound.  Uids already gone are skipped; the first
        retrieval time is kept (E0005).  Returns how many messages were removed.
        """

    async def close(self) -> None:
        """Drop what the handle holds (read-ahead copies); the store stays open."""


class MailStore(Protocol):
    """The contract of a mailbox store.  Every method is a coroutine."""

    @property
    def admin(self) -> AdminRecords:
        """API tokens and disabled accounts (``store/admin_records.py``)."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Release every connection; the store is unusable afterwards."""

    # -- users ---------------------------------------------------------------

    async def add_user(
        self, name: str, verifiers: Mapping[str, str], quota: int | None = None
    ) -> None:
        """Create a user with an empty maildrop.  Raises ``UserExists``."""

    async def set_verifiers(self, name: str, verifiers: Mapping[str, str]) -> None:
        """Replace every verifier of a user at once.  Raises ``UnknownUser``."""

    async def set_quota(self, name: str, quota: int | None) -> None:
        """Set (or with None, clear) a user's own quota.  Raises ``UnknownUser``."""

    async def delete_user(self, name: str) -> None:
        """Remove a user and every message of theirs.  Raises ``UnknownUser``."""

    async def set_disabled(self, name: str, reason: str | None) -> None:
        """Disable a user's logins with ``reason`` ("" for none), or with None enable them.

        Raises ``UnknownUser``.
        """

    async def get_user(self, name: str) -> UserRecord | None:
        """The user, or None when there is no such user."""

    async def find_user(self, name: str) -> UserRecord | None:
        """As ``get_user``, for logins: may be answered from a copy in this process that
        forgets a record when a change to it commits (PostgreSQL:
        ``postgres_accounts_copy``).  Whatever must see the row as it is now (a
        password upgrade, a mechanism's stored secret, administration) uses ``get_user``.
        """

    async def list_users(self) -> Sequence[UserRecord]:
        """Every user, ordered by name."""

    # -- maildrop ------------------------------------------------------------

    async def open_maildrop(self, name: str) -> MaildropHandle:
        """A session's handle on ``name``'s maildrop, its snapshot read.  Raises ``UnknownUser``."""

    async def snapshot(self, name: str) -> Sequence[MessageInfo]:
        """Every message of the maildrop, ordered by uid, in one consistent read."""

    async def usage(self, name: str) -> int:
        """Sum of the exact sizes of the user's messages, in octets."""

    async def fetch(self, name: str, uid: int) -> bytes | None:
        """The wire form of one message, or None if it has been removed since."""

    async def deliver(
        self,
        name: str,
        message: NewMessage,
        *,
        quota: int | None = None,
        dedup_window: float = 0.0,
    ) -> MessageInfo:
        """Store one message durably (committed before returning) and give it a uid.

        With ``quota`` (octets), refuses with ``DeliveryRefused(OVER_QUOTA)`` when the
        message would take the maildrop over it; the check and the insert are atomic.
        A message with a ``delivery_key`` the mailbox recorded less than
        ``dedup_window`` seconds ago is not stored again: the earlier delivery's
        ``MessageInfo`` is returned.  The key is recorded in the delivery's transaction,
        and a backend whose commit reply can be lost looks it up before it answers.
        Raises ``UnknownUser``.
        """

    async def delete(self, name: str, uids: Iterable[int]) -> int:
        """Remove these messages in one transaction (all or none, V0006).

        Uids already gone are skipped; returns how many were removed.
        """

    async def mark_retrieved(self, name: str, uids: Iterable[int], at: float) -> None:
        """Record the first retrieval time of these messages (for retention, E0005)."""

    async def import_messages(
        self, name: str, messages: Sequence[NewMessage], *, uids_above: int = 0
    ) -> Sequence[MessageInfo]:
        """Store a batch of imported messages in one transaction (all or none), in order.

        No quota applies (an administrator is moving mail in).  A message whose
        ``import_key`` this mailbox has recorded before is skipped, and every new key is
        recorded in the same transaction as its message, so re-running an interrupted
        import never stores a message twice.  Before assigning uids, the counter is
        raised past ``uids_above``: an import keeping numeric unique-ids from the old
        server passes the highest one, so no uid given out later can show the same
        unique-id as an imported message (C0008, C0009).  Returns the stored messages.
        Raises ``UnknownUser``.
        """

    async def set_quota_warned(self, name: str, *, warned: bool) -> bool:
        """Set the user's "quota warning sent" flag; returns its previous value (E0004).

        Test and set in one step, so two deliveries crossing the warning threshold at
        the same time send one warning between them.  Raises ``UnknownUser``.
        """

    async def expire(
        self, name: str, *, retrieved_before: float | None, unretrieved_before: float | None
    ) -> int:
        """Remove, in one transaction, the messages retention no longer keeps (E0005).

        Those first retrieved before ``retrieved_before`` and those never retrieved and
        received before ``unretrieved_before``; None keeps that kind.  Returns how many
        were removed.  Raises ``UnknownUser``.
        """

    # -- exclusive lock (lock_mailbox = true) ---------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> None:
        """Take the maildrop lock for ``owner``, or raise ``MaildropLocked``.

        A lock whose lease has run out is taken over, so a crashed process cannot
        hold a maildrop forever.  Holders renew by acquiring again with the same owner.
        """

    async def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it; otherwise do nothing."""
