"""The multi-node ``MailStore``: PostgreSQL through an asyncpg connection pool.

Theory of operation: several popbox nodes (or worker processes) share one database, so
every guarantee of the contract is made by the database, never by process memory:

* ``deliver`` runs one transaction that locks the mailbox's ``users`` row (which holds
  the uid counter) with ``SELECT ... FOR NO KEY UPDATE``, checks the quota, inserts the
  message and advances the counter; ``import_messages`` holds the same lock for its
  whole batch.  Everything that hands out uids for one mailbox, from any number of
  nodes, therefore queues on that row lock: uids are strictly increasing, never
  reused, and two deliveries can never both pass the quota check on the same usage.
  The NO KEY variant conflicts with itself but not with the KEY SHARE lock that
  foreign-key checks take, so a concurrent ``acquire_lock`` is not held up.
* Reads that must be consistent (the login snapshot, usage) and changes that must be
  atomic (``delete``, ``mark_retrieved``, ``expire``, ``set_quota_warned``,
  ``acquire_lock``) are single statements.
* A session reads small bodies ahead of its RETRs under a lease; every transaction that
  removes messages waits out other sessions' leases first (``postgres_readahead``).
* ``open`` applies the numbered migrations of ``migrations/postgresql`` through
  ``popbox.store.migrate``, under an advisory lock, so nodes starting together
  migrate once.
* The ``lock_mailbox`` lock is a lease row, measured with the injected clock, so the
  nodes' clocks must agree (NTP) to well within the lease length.
* Bodies are ``bytea`` (see the 0001 migration for why), selected only by ``fetch``;
  asyncpg's binary protocol decodes the value straight into the ``bytes`` returned.
* UPDATE (``commit_update``, through a session's ``PostgresMaildrop``) and a keyed
  delivery write a row naming themselves in their transaction, so that when the
  connection dies during COMMIT the outcome is looked up before anything is answered
  (``postgres_maildrop.run_commit``, bounded by ``connect_timeout``).

Every call borrows a connection from ``postgres_pool``, where driver failures become
``StoreTemporaryError`` or ``StorePermanentError``, a lost or demoted server is replaced
through ``dsn``'s host list, and every network wait is bounded.  The user
administration methods are inherited from ``postgres_users``.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from popbox.store import migrate
from popbox.store import postgres_copy as pg_copy
from popbox.store import postgres_failover as failover
from popbox.store import postgres_ops as ops
from popbox.store import postgres_readahead as ahead
from popbox.store.base import MaildropLocked, MessageInfo, UnknownUser
from popbox.store.postgres_accounts_copy import AccountsCopy
from popbox.store.postgres_admin import PostgresAdminRecords
from popbox.store.postgres_cluster import PostgresScores, PostgresSessions
from popbox.store.postgres_maildrop import PostgresMaildrop, run_commit
from popbox.store.postgres_options import PostgresOptions
from popbox.store.postgres_pool import PostgresPool
from popbox.store.postgres_scores_copy import ScoresCopy
from popbox.store.postgres_users import PostgresUsers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence
    from contextlib import AbstractAsyncContextManager

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.base import NewMessage, UserRecord
    from popbox.store.store_copy import ImportedMessage, MailboxState

__all__ = ["TOKEN_LIFETIME", "PostgresStore"]

# Seconds an UPDATE's commit token is kept: it is looked up within seconds of its
# commit, and later UPDATEs purge the old ones.
TOKEN_LIFETIME = 86400.0


class PostgresStore(PostgresUsers):
    """A ``MailStore`` in the PostgreSQL database at ``dsn``.

    ``dsn`` is a libpq connection URL, ``postgresql://user:password@host:port/database``
    with optional ``?sslmode=...`` and the like; asyncpg does not accept libpq's
    ``key=value`` form.  Several ``host:port`` pairs separated by commas, with
    ``target_session_attrs=read-write``, make the store follow the primary.
    ``options`` sets the acknowledgement strength and the pooler mode.

    ``clock`` returns POSIX seconds (lock leases, default ``received_at``).  The pool
    keeps between ``min_size`` and ``max_size`` connections.  ``connect_timeout`` bounds
    opening a connection and waiting for a free one; ``command_timeout`` bounds each
    statement.  Either running out raises ``StoreTemporaryError``.
    """

    def __init__(  # noqa: PLR0913 -- keyword-only tuning knobs with defaults
        self,
        dsn: str,
        *,
        clock: Callable[[], float] = time.time,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        options: PostgresOptions | None = None,
        read_ahead_lifetime: float = ahead.LIFETIME,
    ) -> None:
        self._options = options or PostgresOptions()
        self._pool = PostgresPool(
            dsn,
            self._options,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
        )
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._lifetime = read_ahead_lifetime
        self.read_ahead_budget = ahead.AheadBudget()
        self._scores_copy: ScoresCopy | None = None
        self.accounts = AccountsCopy()
        """User records for ``find_user``: live while ``_scores_copy`` listens."""
        """What the read-ahead copies of every session on this store hold, together."""
        self._state = "new"
        self.admin = PostgresAdminRecords(self)

    async def open(self) -> None:
        """Connect, then apply pending migrations (once, whichever node gets there first)."""
        if self._state != "new":
            raise RuntimeError("the store was already opened")
        self._state = "opening"
        try:
            await self._pool.open()
            async with self.connection() as conn:
                await ops.apply_migrations(conn, migrate.load("postgresql"), self._clock)
                await failover.check_synchronous_commit(conn, self._options)
        except BaseException:
            await self.close()
            raise
        self._state = "open"

    async def close(self) -> None:
        """Wait up to ``command_timeout`` for running calls, then close every connection."""
        if self._state == "closed":
            return
        self._state = "closed"
        copy, self._scores_copy = self._scores_copy, None
        if copy is not None:
            await copy.close()
        await self._pool.close()

    # -- maildrop ------------------------------------------------------------

    async def open_maildrop(self, name: str) -> PostgresMaildrop:
        messages = await self.snapshot(name)
        return PostgresMaildrop(
            self, name, messages, lifetime=self._lifetime, budget=self.read_ahead_budget
        )

    async def snapshot(self, name: str) -> Sequence[MessageInfo]:
        async with self.connection() as conn:
            rows = await conn.fetch(ops.SNAPSHOT, name)
        if not rows:
            raise UnknownUser(f"no such user {name!r}")
        if rows[0]["uid"] is None:  # the LEFT JOIN row of a user with an empty maildrop
            return []
        return [MessageInfo(*row) for row in rows]

    async def usage(self, name: str) -> int:
        async with self.connection() as conn:
            row = await conn.fetchrow(ops.USAGE, name)
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        return int(row[0])

    async def fetch(self, name: str, uid: int) -> bytes | None:
        # asyncpg reads bytea in the binary format straight into one bytes object, which
        # is returned as it is: one copy of the body in memory, and no hex text that
        # would double it on the wire and in the decoder.
        async with self.connection() as conn:
            wire: bytes | None = await conn.fetchval(ops.FETCH, name, uid)
        return wire

    async def fetch_ahead(
        self, name: str, holder: str, uids: Sequence[int], lifetime: float
    ) -> dict[int, bytes]:
        """The bodies of ``uids`` still there, under ``holder``'s lease of ``lifetime`` s."""
        async with self.connection() as conn:
            rows = await conn.fetch(ahead.READ_AHEAD, name, holder, list(uids), lifetime)
        return {row[0]: row[1] for row in rows}

    async def deliver(
        self,
        name: str,
        message: NewMessage,
        *,
        quota: int | None = None,
        dedup_window: float = 0.0,
    ) -> MessageInfo:
        stamp = self._clock()
        dedup = (stamp, stamp - dedup_window)

        async def work(conn: PoolConnectionProxy[asyncpg.Record]) -> MessageInfo:
            return await ops.deliver(conn, name, message, quota, dedup, self._clock)

        key = message.delivery_key
        if key is None:
            # Without a key a lost COMMIT reply cannot be resolved: the MTA retries
            # (at-least-once delivery).
            async with self.connection() as conn:
                return await work(conn)

        async def committed(conn: PoolConnectionProxy[asyncpg.Record]) -> MessageInfo | None:
            row = await conn.fetchrow(ops.COMMITTED_DELIVERY, name, key, stamp)
            return None if row is None else ops.delivered_info(row, message)

        return await run_commit(
            self.connection,
            work,
            committed,
            self._connect_timeout,
            barrier=failover.barrier(self._options),
        )

    async def commit_update(
        self,
        name: str,
        deleted: Sequence[int],
        retrieved: Sequence[int],
        at: float,
        *,
        holder: str = "",
    ) -> int:
        """UPDATE for ``PostgresMaildrop.commit``: one transaction, its outcome always learnt.

        ``holder`` names the session's own read-ahead leases, which it does not wait for.
        """
        gone = sorted(set(deleted))
        marked = sorted(set(retrieved) - set(gone))
        token = secrets.token_hex(16)
        now = self._clock()
        args = (name, gone, marked, at, token, now - TOKEN_LIFETIME, now, holder)

        async def work(conn: PoolConnectionProxy[asyncpg.Record]) -> int:
            if gone:
                async with conn.transaction():
                    await ahead.hold_off(conn, name, holder, self._lifetime)
                    row = await conn.fetchrow(ops.COMMIT_UPDATE, *args)
            else:
                # Only stamps: nothing for a lease to wait for, and one statement is its
                # own transaction (no BEGIN and COMMIT round trips).
                row = await conn.fetchrow(ops.COMMIT_UPDATE, *args)
            if row is None or row["user_id"] is None:
                raise UnknownUser(f"no such user {name!r}")
            return int(row["n"])

        async def committed(conn: PoolConnectionProxy[asyncpg.Record]) -> int | None:
            removed = await conn.fetchval(ops.COMMITTED_UPDATE, token)
            return None if removed is None else int(removed)

        return await run_commit(
            self.connection,
            work,
            committed,
            self._connect_timeout,
            barrier=failover.barrier(self._options),
        )

    async def delete(self, name: str, uids: Iterable[int]) -> int:
        return await self._count_for_user(ops.DELETE, name, sorted(set(uids)), removes=True)

    async def mark_retrieved(self, name: str, uids: Iterable[int], at: float) -> None:
        await self._count_for_user(ops.MARK_RETRIEVED, name, sorted(set(uids)), at)

    async def import_messages(
        self, name: str, messages: Sequence[NewMessage], *, uids_above: int = 0
    ) -> Sequence[MessageInfo]:
        async with self.connection() as conn:
            return await ops.import_messages(conn, name, messages, uids_above, self._clock)

    async def set_quota_warned(self, name: str, *, warned: bool) -> bool:
        async with self.connection() as conn:
            row = await conn.fetchrow(ops.SET_QUOTA_WARNED, name, warned)
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        return bool(row[0])

    async def expire(
        self, name: str, *, retrieved_before: float | None, unretrieved_before: float | None
    ) -> int:
        return await self._count_for_user(
            ops.EXPIRE, name, retrieved_before, unretrieved_before, removes=True
        )

    # -- exclusive lock ------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> None:
        now = self._clock()
        taken = await self._count_for_user(ops.ACQUIRE_LOCK, name, owner, now, now + lease_seconds)
        if not taken:
            raise MaildropLocked(f"maildrop {name!r} is locked by another session")

    async def release_lock(self, name: str, owner: str) -> None:
        sql = (
            "DELETE FROM locks"
            " WHERE owner = $2 AND user_id = (SELECT id FROM users WHERE name = $1)"
        )
        async with self.connection() as conn:
            await conn.execute(sql, name, owner)

    # -- state every node shares (popbox.store.postgres_cluster) ----------------

    def cluster_scores(self, *, max_tracked: int) -> PostgresScores:
        """Brute-force scores in the database, for every worker of every node.

        With a copy of the lockouts kept by LISTEN/NOTIFY (``postgres_scores_copy``),
        one per store, started here on the running loop and bounded like the process's
        own scores (``[auth] max_tracked``); not behind a transaction pooler, where
        LISTEN cannot work.  Its listening connection also keeps ``accounts`` live.
        """
        if self._scores_copy is None and not self._options.transaction_pooler:
            self._scores_copy = ScoresCopy(
                self._pool.connect_alone,
                self._clock,
                max_tracked=max_tracked,
                records=self.accounts,
            )
            self._scores_copy.start()
        return PostgresScores(self.connection, self._scores_copy)

    def cluster_sessions(self, clock: Callable[[], float]) -> PostgresSessions:
        """``max_sessions_per_user`` slots in the database, for every node."""
        return PostgresSessions(self.connection, clock)

    # -- store-to-store copy (popbox.store.store_copy) --------------------------

    async def export_state(self, name: str) -> MailboxState:
        """``name``'s counter, retrieval times, quota-warning flag and import keys."""
        async with self.connection() as conn:
            return await pg_copy.export_state(conn, name)

    async def import_mailbox(
        self, user: UserRecord, messages: AsyncIterator[ImportedMessage], *, state: MailboxState
    ) -> int:
        """Create ``user`` with ``messages`` under their own uids, all or nothing.

        Raises ``UserExists``; see ``popbox.store.store_copy.MailboxImporter``.
        """
        async with self.connection() as conn:
            return await pg_copy.import_mailbox(conn, user, messages, state, self._clock)

    # -- helpers -------------------------------------------------------------

    async def _count_for_user(self, sql: str, name: str, *args: Any, removes: bool = False) -> int:
        """Run a ``user_id, n`` statement of ``postgres_ops``; ``n`` if the user exists.

        A statement that ``removes`` messages waits out the read-ahead leases first.
        """
        async with self.connection() as conn:
            if removes:
                async with conn.transaction():
                    await ahead.hold_off(conn, name, lifetime=self._lifetime)
                    row = await conn.fetchrow(sql, name, *args)
            else:
                row = await conn.fetchrow(sql, name, *args)
        if row is None or row["user_id"] is None:
            raise UnknownUser(f"no such user {name!r}")
        return int(row["n"])

    def connection(self) -> AbstractAsyncContextManager[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection; driver failures inside the block become ``StoreError``s."""
        if self._state == "closed":
            raise RuntimeError("the store is not open")
        return self._pool.connection()
