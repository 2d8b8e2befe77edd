"""The two transactions ``PostgresStore`` offers to ``popbox.store.store_copy``.

``export_state`` reads what the ``MailStore`` contract has no reader for, and
``import_mailbox`` writes a user with all of their mail under the source's uids: the
bulk path a store-to-store copy needs to keep every UIDL (see ``transfer``'s module
docstring).  Each is one transaction, so an export is a consistent picture and an
import is all or nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import asyncpg

from popbox.store.base import UnknownUser, UserExists
from popbox.store.postgres_rows import copy_rows
from popbox.store.store_copy import MailboxState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from popbox.store.base import UserRecord
    from popbox.store.postgres_ops import Conn
    from popbox.store.store_copy import ImportedMessage

__all__ = ["export_state", "import_mailbox"]

# import_mailbox() writes messages with binary COPY in batches of at most this many rows
# or octets, so a copy holds a bounded amount of mail in memory however large the
# mailbox, and each COPY stays well inside the command timeout.
_BATCH_ROWS = 500
_BATCH_OCTETS = 16 * 1024 * 1024


async def export_state(conn: Conn, name: str) -> MailboxState:
    """``name``'s counter, retrieval times, quota-warning flag and import keys."""
    # REPEATABLE READ: the three reads see one snapshot, even with deliveries running.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            "SELECT id, next_uid, quota_warned FROM users WHERE name = $1", name
        )
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        retrieved = await conn.fetch(
            "SELECT uid, retrieved_at FROM messages"
            " WHERE user_id = $1 AND retrieved_at IS NOT NULL",
            row["id"],
        )
        keys = await conn.fetch("SELECT key FROM import_keys WHERE user_id = $1", row["id"])
    return MailboxState(
        next_uid=int(row["next_uid"]),
        retrieved_at={int(r["uid"]): float(r["retrieved_at"]) for r in retrieved},
        quota_warned=bool(row["quota_warned"]),
        import_keys=frozenset(str(r["key"]) for r in keys),
    )


async def import_mailbox(
    conn: Conn,
    user: UserRecord,
    messages: AsyncIterator[ImportedMessage],
    state: MailboxState,
    clock: Callable[[], float],
) -> int:
    """Create ``user`` with ``messages`` under their own uids, in one transaction.

    The counter ends at ``state.next_uid`` or one past the highest uid, whichever is
    larger, so no uid the source ever gave out is handed out again.  Raises
    ``UserExists``; returns how many messages were stored.
    """
    async with conn.transaction():
        try:
            user_id = await conn.fetchval(
                "INSERT INTO users (name, verifiers, quota, quota_warned, created, disabled)"
                " VALUES ($1, $2::jsonb, $3, $4, $5, $6) RETURNING id",
                user.name,
                json.dumps(dict(user.verifiers)),
                user.quota,
                state.quota_warned,
                clock(),
                user.disabled_reason,
            )
        except asyncpg.UniqueViolationError as exc:
            raise UserExists(f"user {user.name!r} already exists") from exc
        if state.import_keys:
            await conn.execute(
                "INSERT INTO import_keys (user_id, key) SELECT $1, unnest($2::text[])",
                user_id,
                sorted(state.import_keys),
            )
        copied = 0
        batch: list[tuple[object, ...]] = []
        octets = 0
        async for item in messages:
            info = item.info
            row = (info.uid, info.size, info.stored_size, info.received_at)
            retrieved_at = state.retrieved_at.get(info.uid)
            batch.append((user_id, *row, retrieved_at, info.legacy_uidl, item.wire))
            octets += len(item.wire)
            if len(batch) >= _BATCH_ROWS or octets >= _BATCH_OCTETS:
                await copy_rows(conn, batch)
                copied += len(batch)
                batch, octets = [], 0
        await copy_rows(conn, batch)
        copied += len(batch)
        await conn.execute(
            "UPDATE users SET next_uid = greatest($2::bigint,"
            " (SELECT coalesce(max(uid), 0) + 1 FROM messages WHERE user_id = $1))"
            " WHERE id = $1",
            user_id,
            state.next_uid,
        )
    return copied
