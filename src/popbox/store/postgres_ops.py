"""SQL, transactions and schema migration behind ``PostgresStore``.

Kept apart from the store class so that the class reads as the contract it implements
and this module as the database-specific detail: how nodes agree on who migrates, the
statements whose shape matters for correctness (one statement where the contract asks
for one consistent read or one atomic change), and the multi-statement transactions,
each a function taking the connection it runs on.  Which failures are worth retrying is
decided where connections are lent out (``postgres_pool``), and the statements on users
are with the user administration (``postgres_users``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from popbox.store import migrate
from popbox.store.base import DeliveryRefused, MessageInfo, RefusalReason, assign_uids
from popbox.store.postgres_failover import lock_counter
from popbox.store.postgres_rows import insert_messages, message_row
from popbox.store.spooled import SpooledWire

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.base import NewMessage

    # A pooled connection in the store, a plain one in migration tests and tools.
    Conn: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

__all__ = [
    "ACQUIRE_LOCK",
    "COMMITTED_DELIVERY",
    "COMMITTED_UPDATE",
    "COMMIT_UPDATE",
    "DELETE",
    "EARLIER_DELIVERY",
    "EXPIRE",
    "FETCH",
    "MARK_RETRIEVED",
    "MIGRATION_LOCK_KEY",
    "MIGRATION_TIMEOUT",
    "SET_QUOTA_WARNED",
    "SNAPSHOT",
    "USAGE",
    "USED_BY_ID",
    "apply_migrations",
    "deliver",
    "delivered_info",
    "import_messages",
]

# pg_advisory_xact_lock key held while migrating: "popbox" in ASCII, so that it is
# recognisable in pg_locks and unlikely to collide with another application's key.
MIGRATION_LOCK_KEY = 0x706F70626F78

# A migration may wait for another node's migration (the advisory lock) and then build
# indexes over a large table: far longer than an ordinary command may take.
MIGRATION_TIMEOUT = 600.0

# The statements below use a CTE that reads the user id and acts on messages in ONE
# statement: it is atomic, and the outer SELECT still tells "no such user" (NULL id)
# from "nothing matched" (count 0) without a second round trip.
SNAPSHOT = (
    "SELECT m.uid, m.size, m.stored_size, m.received_at, m.legacy_uidl"
    " FROM users AS u LEFT JOIN messages AS m ON m.user_id = u.id"
    " WHERE u.name = $1 ORDER BY m.uid"
)
# sum(bigint) is numeric in PostgreSQL; the cast keeps it an int on the Python side.
USAGE = (
    "SELECT coalesce(sum(m.size), 0)::bigint FROM users AS u"
    " LEFT JOIN messages AS m ON m.user_id = u.id WHERE u.name = $1 GROUP BY u.id"
)
USED_BY_ID = "SELECT coalesce(sum(size), 0)::bigint FROM messages WHERE user_id = $1"
FETCH = (
    "SELECT m.wire FROM messages AS m JOIN users AS u ON u.id = m.user_id"
    " WHERE u.name = $1 AND m.uid = $2"
)
DELETE = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " gone AS (DELETE FROM messages AS m USING u"
    "  WHERE m.user_id = u.id AND m.uid = ANY($2::bigint[]) RETURNING 1)"
    " SELECT (SELECT id FROM u) AS user_id, (SELECT count(*) FROM gone) AS n"
)
# UPDATE: stamp, remove, and record the token that lets popbox learn the outcome after a
# lost COMMIT reply, in one statement (inside the caller's transaction); tokens older
# than $6 are purged on the way.  The retrieved uids exclude the deleted ones: a
# statement must not change one row twice.  The session ends here, and with it its
# read-ahead lease (holder $8, postgres_readahead): one another session's removal need
# not wait for.  Not if another holder has stamped since, and not while a removal holds
# the row (SKIP LOCKED: a stamp-only UPDATE never queues behind one); the lease then
# simply runs out.
COMMIT_UPDATE = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " released AS (UPDATE read_ahead SET until = 0 WHERE user_id IN ("
    "  SELECT r.user_id FROM read_ahead AS r JOIN u ON r.user_id = u.id"
    "  WHERE $8 <> '' AND r.holder = $8 FOR UPDATE OF r SKIP LOCKED)),"
    " marked AS (UPDATE messages AS m SET retrieved_at = $4 FROM u"
    "  WHERE m.user_id = u.id AND m.uid = ANY($3::bigint[]) AND m.retrieved_at IS NULL"
    "  RETURNING 1),"
    " gone AS (DELETE FROM messages AS m USING u"
    "  WHERE m.user_id = u.id AND m.uid = ANY($2::bigint[]) RETURNING 1),"
    " purged AS (DELETE FROM commit_tokens WHERE committed_at < $6 RETURNING 1),"
    " token AS (INSERT INTO commit_tokens (token, committed_at, removed)"
    "  SELECT $5, $7, (SELECT count(*) FROM gone) FROM u RETURNING 1)"
    " SELECT (SELECT id FROM u) AS user_id, (SELECT count(*) FROM gone) AS n"
)
COMMITTED_UPDATE = "SELECT removed FROM commit_tokens WHERE token = $1"
# A delivery key recorded since $3 (older ones of the mailbox are purged on the way).
EARLIER_DELIVERY = (
    "WITH purged AS (DELETE FROM delivery_keys WHERE user_id = $1 AND delivered_at < $3"
    "  RETURNING 1)"
    " SELECT k.uid, k.delivered_at, m.size, m.stored_size, m.received_at, m.legacy_uidl"
    " FROM delivery_keys AS k LEFT JOIN messages AS m ON m.user_id = k.user_id AND m.uid = k.uid"
    " WHERE k.user_id = $1 AND k.key = $2 AND k.delivered_at >= $3"
)
# The delivery made at exactly $3 (its own stamp): did a delivery whose reply was lost commit?
COMMITTED_DELIVERY = (
    "SELECT k.uid, k.delivered_at, m.size, m.stored_size, m.received_at, m.legacy_uidl"
    " FROM users AS u JOIN delivery_keys AS k ON k.user_id = u.id"
    " LEFT JOIN messages AS m ON m.user_id = k.user_id AND m.uid = k.uid"
    " WHERE u.name = $1 AND k.key = $2 AND k.delivered_at = $3"
)
MARK_RETRIEVED = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " marked AS (UPDATE messages AS m SET retrieved_at = $3 FROM u"
    "  WHERE m.user_id = u.id AND m.uid = ANY($2::bigint[]) AND m.retrieved_at IS NULL"
    "  RETURNING 1)"
    " SELECT (SELECT id FROM u) AS user_id, (SELECT count(*) FROM marked) AS n"
)
# The lease row: a new lock is inserted; an existing one is overwritten only when it has
# expired or belongs to the same owner (a renewal).  Two nodes racing for a free
# maildrop both reach ON CONFLICT, and the loser re-evaluates the WHERE against the
# winner's committed row, so it sees a live lease and takes nothing.
ACQUIRE_LOCK = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " taken AS (INSERT INTO locks (user_id, owner, expires) SELECT id, $2, $4 FROM u"
    "  ON CONFLICT (user_id) DO UPDATE"
    "  SET owner = excluded.owner, expires = excluded.expires"
    "  WHERE locks.expires <= $3 OR locks.owner = excluded.owner RETURNING 1)"
    " SELECT (SELECT id FROM u) AS user_id, (SELECT count(*) FROM taken) AS n"
)


EXPIRE = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " gone AS (DELETE FROM messages AS m USING u WHERE m.user_id = u.id AND ("
    "  (m.retrieved_at IS NOT NULL AND m.retrieved_at < $2::float8)"
    "  OR (m.retrieved_at IS NULL AND m.received_at < $3::float8)) RETURNING 1)"
    " SELECT (SELECT id FROM u) AS user_id, (SELECT count(*) FROM gone) AS n"
)
# Test and set in one statement: the subquery locks the row, and under READ COMMITTED
# a waiter re-reads it after the lock is granted, so of two concurrent calls setting
# True exactly one sees False (one quota warning, E0004).
SET_QUOTA_WARNED = (
    "UPDATE users AS u SET quota_warned = $2 FROM"
    " (SELECT id, quota_warned FROM users WHERE name = $1 FOR NO KEY UPDATE) AS old"
    " WHERE u.id = old.id RETURNING old.quota_warned"
)


async def apply_migrations(
    conn: Conn,
    migrations: Sequence[migrate.Migration],
    clock: Callable[[], float],
) -> None:
    """Bring the database up to the last of ``migrations``, one transaction per step.

    Every step takes a transaction-scoped advisory lock first and re-reads the schema
    version under it, so when several nodes start together one applies the step and
    the others wait, then find nothing left to do.  The lock is released at commit or
    when a crashed node's connection drops, so it can never be left behind.
    """
    while True:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_TIMEOUT
            )
            # Under the lock: CREATE TABLE IF NOT EXISTS is not safe against a
            # concurrent twin (both may pass the check, one fails on the catalog).
            await conn.execute(migrate.SCHEMA_VERSION_DDL)
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            todo = migrate.pending(migrations, int(current))
            if not todo:
                return
            step = todo[0]
            # No arguments: asyncpg uses the simple query protocol, which runs a whole
            # multi-statement script.
            await conn.execute(step.sql, timeout=MIGRATION_TIMEOUT)
            applied_at = datetime.fromtimestamp(clock(), UTC).isoformat()
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                step.version,
                applied_at,
            )


async def deliver(  # noqa: PLR0913, PLR0917 - the parts of one delivery
    conn: Conn,
    name: str,
    message: NewMessage,
    quota: int | None,
    dedup: tuple[float, float],
    clock: Callable[[], float],
) -> MessageInfo:
    """``MailStore.deliver`` as one transaction: lock the counter, check quota, store.

    ``dedup`` is (this delivery's stamp, the oldest stamp of a key that still counts).
    """
    stamp, since = dedup
    key = message.delivery_key
    async with conn.transaction():
        user_id, uid, timeline = await lock_counter(conn, name)
        if key is not None:
            earlier = await conn.fetchrow(EARLIER_DELIVERY, user_id, key, since)
            if earlier is not None:
                return delivered_info(earlier, message)
        if quota is not None:
            # A statement after the lock: under READ COMMITTED it sees every delivery
            # committed before ours got the row, so two cannot pass on the same usage.
            used = int(await conn.fetchval(USED_BY_ID, user_id))
            if used + message.size > quota:
                raise DeliveryRefused(
                    RefusalReason.OVER_QUOTA,
                    f"mailbox {name!r} is over quota: {used} + {message.size} > {quota} octets",
                )
        [info] = assign_uids([message], uid, clock)
        if isinstance(message.wire, SpooledWire):
            await insert_messages(conn, user_id, [info], [message])
            await conn.execute(
                "UPDATE users SET next_uid = $2 + 1, uid_timeline = $3 WHERE id = $1",
                user_id,
                uid,
                timeline,
            )
        else:
            # One round trip: the row and the counter in one statement.
            await conn.execute(
                "WITH stored AS (INSERT INTO messages (user_id, uid, size, stored_size,"
                " received_at, retrieved_at, legacy_uidl, wire)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8))"
                " UPDATE users SET next_uid = $2 + 1, uid_timeline = $9 WHERE id = $1",
                *message_row(user_id, info, message),
                timeline,
            )
        if key is not None:
            await conn.execute(
                "INSERT INTO delivery_keys (user_id, key, uid, delivered_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key)"
                " DO UPDATE SET uid = excluded.uid, delivered_at = excluded.delivered_at",
                user_id,
                key,
                uid,
                stamp,
            )
    return info


def delivered_info(row: asyncpg.Record, message: NewMessage) -> MessageInfo:
    """The ``MessageInfo`` of a recorded delivery (``EARLIER_DELIVERY``'s columns)."""
    if row["size"] is None:  # delivered, then retrieved and deleted before the retry
        return MessageInfo(int(row["uid"]), message.size, len(message.wire), row["delivered_at"])
    return MessageInfo(
        int(row["uid"]),
        int(row["size"]),
        int(row["stored_size"]),
        float(row["received_at"]),
        row["legacy_uidl"],
    )


async def import_messages(
    conn: Conn,
    name: str,
    messages: Sequence[NewMessage],
    uids_above: int,
    clock: Callable[[], float],
) -> list[MessageInfo]:
    """``MailStore.import_messages`` as one transaction under the counter lock."""
    async with conn.transaction():
        user_id, next_uid, timeline = await lock_counter(conn, name)
        keys = [m.import_key for m in messages if m.import_key is not None]
        # ON CONFLICT DO NOTHING returns only keys this mailbox has not recorded
        # before, each once even when the batch repeats it.
        fresh_keys = set()
        if keys:
            rows = await conn.fetch(
                "INSERT INTO import_keys (user_id, key) SELECT $1, unnest($2::text[])"
                " ON CONFLICT DO NOTHING RETURNING key",
                user_id,
                keys,
            )
            fresh_keys = {str(row[0]) for row in rows}
        fresh = []
        for message in messages:
            if message.import_key is not None:
                if message.import_key not in fresh_keys:
                    continue  # committed by an earlier run, or earlier in this batch
                fresh_keys.discard(message.import_key)
            fresh.append(message)
        first = max(next_uid, uids_above + 1)
        infos = assign_uids(fresh, first, clock)
        await insert_messages(conn, user_id, infos, fresh)
        await conn.execute(
            "UPDATE users SET next_uid = $2, uid_timeline = $3 WHERE id = $1",
            user_id,
            first + len(fresh),
            timeline,
        )
    return infos
