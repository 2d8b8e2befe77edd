"""User administration on PostgreSQL: the ``MailStore`` methods on the ``users`` table.

Theory of operation: each method is one statement on ``users`` (``delete_user`` first
waits out other sessions' read-ahead leases, as every removal of messages does:
``postgres_readahead``), so the database, not process memory, keeps the guarantees
across nodes: the name is the table's one unique key, so of two ``add_user`` calls for
one name, on whichever nodes, one fails with ``UserExists``; a change or a removal whose
``RETURNING`` finds no row answers ``UnknownUser``.

``find_user`` is ``get_user`` through the process's copy of user records
(``postgres_accounts_copy``), which a trigger on ``users`` keeps from going stale.

``PostgresStore`` inherits these methods from ``PostgresUsers``; they are kept apart
from the store class so that it reads as the mail path (deliveries, maildrops, UPDATE).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from popbox.store import postgres_readahead as ahead
from popbox.store.base import StorePermanentError, UnknownUser, UserExists, UserRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.postgres_accounts_copy import AccountsCopy

__all__ = ["DELETE_USER", "PostgresUsers", "user_record"]

# delete_user: ON DELETE CASCADE takes the messages and the lock; the lease row has no
# foreign key (its row 0 has no user), so it goes in the same statement.
DELETE_USER = (
    "WITH gone AS (DELETE FROM users WHERE name = $1 RETURNING id),"
    " lease AS (DELETE FROM read_ahead WHERE user_id IN (SELECT id FROM gone))"
    " SELECT id FROM gone"
)


class _Store(Protocol):
    """What these methods need of ``PostgresStore`` (named here: it imports this module)."""

    _clock: Callable[[], float]
    _lifetime: float
    accounts: AccountsCopy

    def connection(self) -> AbstractAsyncContextManager[PoolConnectionProxy[asyncpg.Record]]: ...

    async def get_user(self, name: str) -> UserRecord | None: ...


class PostgresUsers:
    """The user administration of ``PostgresStore``, which inherits it."""

    async def add_user(
        self: _Store, name: str, verifiers: Mapping[str, str], quota: int | None = None
    ) -> None:
        sql = "INSERT INTO users (name, verifiers, quota, created) VALUES ($1, $2::jsonb, $3, $4)"
        async with self.connection() as conn:
            try:
                await conn.execute(sql, name, json.dumps(dict(verifiers)), quota, self._clock())
            except asyncpg.UniqueViolationError as exc:  # the only unique key we set is name
                raise UserExists(f"user {name!r} already exists") from exc

    async def set_verifiers(self: _Store, name: str, verifiers: Mapping[str, str]) -> None:
        sql = "UPDATE users SET verifiers = $2::jsonb WHERE name = $1 RETURNING id"
        await _change_user(self, sql, name, json.dumps(dict(verifiers)))

    async def set_quota(self: _Store, name: str, quota: int | None) -> None:
        await _change_user(
            self, "UPDATE users SET quota = $2 WHERE name = $1 RETURNING id", name, quota
        )

    async def set_disabled(self: _Store, name: str, reason: str | None) -> None:
        await _change_user(
            self, "UPDATE users SET disabled = $2 WHERE name = $1 RETURNING id", name, reason
        )

    async def delete_user(self: _Store, name: str) -> None:
        # ON DELETE CASCADE removes messages and lock in the same statement.  DELETE locks
        # the row FOR UPDATE, so it waits for a delivery in progress instead of racing it.
        async with self.connection() as conn, conn.transaction():
            await ahead.hold_off(conn, name, lifetime=self._lifetime)
            changed = await conn.fetchval(DELETE_USER, name)
        if changed is None:
            raise UnknownUser(f"no such user {name!r}")

    async def get_user(self: _Store, name: str) -> UserRecord | None:
        sql = "SELECT name, verifiers::text, quota, disabled FROM users WHERE name = $1"
        async with self.connection() as conn:
            row = await conn.fetchrow(sql, name)
        return None if row is None else user_record(row)

    async def find_user(self: _Store, name: str) -> UserRecord | None:
        copy = self.accounts
        kept, record = copy.get(name)
        if kept:
            return record
        ticket = copy.ticket()
        record = await self.get_user(name)
        copy.keep(name, record, ticket)
        return record

    async def list_users(self: _Store) -> Sequence[UserRecord]:
        # The column's "C" collation gives code point order, as Python's sorted() does.
        sql = "SELECT name, verifiers::text, quota, disabled FROM users ORDER BY name"
        async with self.connection() as conn:
            rows = await conn.fetch(sql)
        return [user_record(row) for row in rows]


def user_record(row: asyncpg.Record) -> UserRecord:
    """A ``UserRecord`` from a ``name, verifiers, quota, disabled`` row (verifiers as JSON text)."""
    name = str(row["name"])
    try:
        verifiers = json.loads(row["verifiers"])
    except (TypeError, ValueError) as exc:
        raise StorePermanentError(f"user {name!r} has unreadable verifiers") from exc
    if not isinstance(verifiers, dict) or not all(
        isinstance(value, str) for value in verifiers.values()
    ):
        raise StorePermanentError(f"user {name!r} has unreadable verifiers")
    quota = row["quota"]
    disabled = row["disabled"]
    return UserRecord(
        name=name,
        verifiers=verifiers,
        quota=None if quota is None else int(quota),
        disabled_reason=None if disabled is None else str(disabled),
    )


async def _change_user(store: _Store, sql: str, name: str, *args: Any) -> None:
    async with store.connection() as conn:
        changed = await conn.fetchval(sql, name, *args)
    if changed is None:
        raise UnknownUser(f"no such user {name!r}")
