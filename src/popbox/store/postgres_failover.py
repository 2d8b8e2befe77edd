"""Failover: finding the primary among several hosts, and what each connection knows of it.

Theory of operation: ``[storage] dsn`` may name several hosts, libpq style
(``postgresql://db1:5432,db2:5432/popbox?target_session_attrs=read-write``).  asyncpg
(0.28 and later) tries them in order for every new connection and, with
``target_session_attrs=read-write``, keeps the first that accepts writes (it reads the
``in_hot_standby`` and ``default_transaction_read_only`` parameters the server reports,
or asks ``pg_is_in_recovery()`` of an older one): a standby is skipped, a promoted
standby is taken.  So reconnecting is all failover takes, and the store arranges that:

* when a connection is lost, or a statement finds the server read-only (a demoted
  primary: SQLSTATE 25006), the store expires every pooled connection
  (``Pool.expire_connections``), so each is replaced through the host list on its next
  use instead of failing once per connection on a dead or demoted server;
* ``ConnectBackoff`` wraps asyncpg's connect: after a failure (no host answers, or none
  is a primary yet because the standby is still being promoted) the next attempt waits
  for a short, doubling while (``BACKOFF_FIRST`` up to ``BACKOFF_MAX``), so the hosts
  are not tried once per command while there is no primary (the pool already caps the
  attempts at once to its size), and the new primary is found within ``BACKOFF_MAX`` of
  its promotion.  A command waiting for a connection still gets its ``-ERR [SYS/TEMP]``
  / LMTP 4xx within ``connect_timeout``;
* every new connection learns, in one query (the pool's ``init``), which server it is
  on (``pg_postmaster_start_time()``: a promoted standby has its own) and the server's
  WAL timeline, which a promotion increments.  The commit-outcome look-up uses the
  first to know whether the connection it lost was to the server it now asks
  (``postgres_maildrop.run_commit``); uid allocation uses the second
  (``postgres_ops.deliver``: after a promotion, each mailbox's counter skips ahead, so a
  uid handed out by the old primary in a commit the standby never received is never
  handed out again).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import asyncpg

from popbox.store.base import StorePermanentError, UnknownUser

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import TypeAlias

    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.postgres_options import PostgresOptions

    Conn: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "BARRIER",
    "LOCK_COUNTER",
    "READ_ONLY_SQLSTATE",
    "UID_FAILOVER_GAP",
    "ConnectBackoff",
    "ServerConnection",
    "barrier",
    "check_synchronous_commit",
    "driver_options",
    "learn_server",
    "lock_counter",
    "server_changed",
    "server_of",
    "timeline_of",
]

BACKOFF_FIRST = 0.05  # seconds a failed connect keeps new attempts away; doubles each time
BACKOFF_MAX = 1.0  # ... up to this: the new primary is found within it of its promotion

# What a write on a standby (or a demoted primary) fails with.
READ_ONLY_SQLSTATE = "25006"
# A write whose only purpose is its commit (``barrier``); dated 0, the next UPDATE
# purges it with the day-old commit tokens.
BARRIER = "INSERT INTO commit_tokens (token, committed_at, removed) VALUES ($1, 0, 0)"

# How far a mailbox's uid counter skips ahead at its first uid on a new timeline.  A
# standby promoted after asynchronous replication may lack the last commits of the old
# primary, uids included that clients have seen (and keep, leaving mail on the server);
# handing them out again would hide new mail behind a uid a client already has
# (C0007-C0009).  The lost commits are those of the replication lag, seconds: no mailbox
# receives ten thousand messages in that time.  With synchronous replication nothing
# acknowledged is lost, and the skip only makes the uids jump once per promotion.
UID_FAILOVER_GAP = 10_000

# The row that holds the uid counter.  Locking it serialises everything that hands out
# uids for this mailbox (deliver, import_messages) across all nodes.  NO KEY: it
# conflicts with itself but not with the KEY SHARE lock that foreign-key checks take.
LOCK_COUNTER = "SELECT id, next_uid, uid_timeline FROM users WHERE name = $1 FOR NO KEY UPDATE"

# One round trip per new connection.  pg_current_wal_lsn() fails on a standby, which a
# DSN without target_session_attrs may reach: the timeline is then 0 (unknown), and the
# first write fails anyway.  The first 8 hex digits of a WAL file name are its timeline.
_LEARN = (
    "SELECT pg_postmaster_start_time()::text,"
    " CASE WHEN pg_is_in_recovery() THEN 0"
    " ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END"
)


class ServerConnection(asyncpg.Connection):  # generic only in the type stubs
    """An asyncpg connection that remembers which server and timeline it is on."""

    server_started = ""  # pg_postmaster_start_time() of the server; "" until learnt
    timeline = 0  # the server's WAL timeline when the connection was made; 0: unknown


async def learn_server(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's ``init``: record the server and timeline on a new connection."""
    row = await conn.fetchrow(_LEARN)
    if isinstance(conn, ServerConnection) and row is not None:
        conn.server_started = str(row[0])
        conn.timeline = int(row[1])


def server_of(conn: PoolConnectionProxy[asyncpg.Record]) -> str:
    """Which server ``conn`` is on ("" if unknown); a proxy passes attributes through."""
    return str(getattr(conn, "server_started", ""))


def timeline_of(conn: Conn) -> int:
    """The WAL timeline of ``conn``'s server when it connected (0 if unknown)."""
    return int(getattr(conn, "timeline", 0))


class ConnectBackoff:
    """asyncpg's ``connect``, spacing out attempts after each failure."""

    def __init__(self, *, first: float = BACKOFF_FIRST, most: float = BACKOFF_MAX) -> None:
        self._first = first
        self._most = most
        self._delay = first
        self._retry_at = 0.0

    async def connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection[Any]:
        loop = asyncio.get_running_loop()
        wait = self._retry_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            conn: asyncpg.Connection[Any] = await asyncpg.connect(*args, **kwargs)
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # TargetServerAttributeNotMatched: no primary
        ):
            self._retry_at = loop.time() + self._delay
            self._delay = min(self._delay * 2, self._most)
            raise
        self._delay = self._first
        return conn


async def lock_counter(conn: Conn, name: str) -> tuple[int, int, int]:
    """Lock ``name``'s uid counter: (user id, next uid to give, timeline to record).

    The next uid skips ``UID_FAILOVER_GAP`` when the counter was last advanced on
    another timeline than the server's now; the caller stores the timeline returned
    with the advanced counter.  A timeline not known on either side changes nothing.
    """
    row = await conn.fetchrow(LOCK_COUNTER, name)
    if row is None:
        raise UnknownUser(f"no such user {name!r}")
    next_uid, recorded = int(row["next_uid"]), int(row["uid_timeline"])
    timeline = timeline_of(conn) or recorded
    if recorded and timeline != recorded:
        next_uid += UID_FAILOVER_GAP
    return int(row["id"]), next_uid, timeline


def driver_options(options: PostgresOptions) -> dict[str, Any]:
    """asyncpg's connection options for ``[storage]``'s settings."""
    if options.transaction_pooler:
        # A transaction pooler hands each transaction to any server connection: a
        # statement prepared on one is unknown to the next, and a setting sent at
        # connect time would stay with one server connection (PgBouncer refuses it).
        return {"statement_cache_size": 0}
    if options.synchronous_commit:
        return {"server_settings": {"synchronous_commit": options.synchronous_commit}}
    return {}


async def check_synchronous_commit(
    conn: PoolConnectionProxy[asyncpg.Record], options: PostgresOptions
) -> None:
    """Behind a pooler the setting must come from the database; refuse to start if not."""
    wanted = options.synchronous_commit
    if not (wanted and options.transaction_pooler):
        return
    actual = await conn.fetchval("SELECT current_setting('synchronous_commit')")
    if actual != wanted:
        raise StorePermanentError(
            f"[storage] synchronous_commit = {wanted!r}, but through the transaction"
            f" pooler the database says {actual!r}: set it for popbox's role"
            f" (ALTER ROLE ... SET synchronous_commit = '{wanted}')"
        )


def barrier(
    options: PostgresOptions,
) -> Callable[[PoolConnectionProxy[asyncpg.Record]], Awaitable[str]] | None:
    """A commit that returns once the synchronous standby has everything before it.

    Only when ``[storage] synchronous_commit`` asks for a standby: a commit found after
    a lost reply may have been committed locally only (PostgreSQL commits locally when
    a wait for the standby is cancelled, by popbox's statement timeout for one), and its
    250 or +OK must not be given before the standby has it.  A ``BARRIER`` row writes
    WAL after that commit's, so its own commit waits for the standby.
    """
    if not options.waits_for_standby:
        return None

    async def confirm(conn: PoolConnectionProxy[asyncpg.Record]) -> str:
        return await conn.execute(BARRIER, secrets.token_hex(16))

    return confirm


def server_changed(exc: BaseException) -> bool:
    """Whether ``exc`` says the server is gone or no longer the primary."""
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError):
        return True
    state = str(getattr(exc, "sqlstate", "") or "")
    # 25006: a write on a read-only server (a demoted primary); 57P01..57P03: the server
    # is shutting down or not yet accepting connections (a restart, a promotion).
    return state == READ_ONLY_SQLSTATE or state in {"57P01", "57P02", "57P03"}
