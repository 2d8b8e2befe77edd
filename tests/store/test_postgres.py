"""PostgreSQL-only behaviour: several nodes on one database, failures, migrations.

Each test gets an empty database of its own from the ``pg_dsn`` fixture
(tests/store/conftest.py).  Two ``PostgresStore`` instances on one DSN stand for two
popbox nodes: they share nothing but the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import TYPE_CHECKING, Any

import pytest

from popbox.store import migrate, open_store
from popbox.store.base import (
    DeliveryRefused,
    MaildropLocked,
    MessageInfo,
    StorePermanentError,
    StoreTemporaryError,
    UserRecord,
)
from popbox.store.message import prepare

# Skipped without the driver, unless PG_DSN says these tests must run (CI).
if not os.environ.get("PG_DSN"):
    pytest.importorskip("asyncpg")
import asyncpg

from popbox.store import postgres_ops as ops
from popbox.store.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

MESSAGE = b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n"


class FakeClock:
    """POSIX seconds that move only when a test says so; shared by both "nodes"."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def _admin(dsn: str) -> Any:
    return await asyncpg.connect(dsn, timeout=5.0, command_timeout=30.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def nodes(pg_dsn: str, clock: FakeClock) -> AsyncIterator[tuple[PostgresStore, ...]]:
    """Two stores on one database, opened together as two nodes starting at once would."""
    stores = tuple(PostgresStore(pg_dsn, clock=clock, max_size=5) for _ in range(2))
    try:
        await asyncio.gather(*(store.open() for store in stores))
        await stores[0].add_user("alice", {"argon2id": "a"})
        yield stores
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# -- several nodes -------------------------------------------------------------


async def test_two_nodes_open_together_migrate_once(nodes, pg_dsn: str) -> None:
    """Migrations run under an advisory lock: every version is recorded exactly once."""
    conn = await _admin(pg_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
    finally:
        await conn.close()
    assert sorted(versions) == [m.version for m in migrate.load("postgresql")]


async def test_concurrent_deliveries_from_two_nodes_get_unique_increasing_uids_c0007(
    nodes,
) -> None:
    """C0007/C0008: unique-ids are increasing and never reused, whichever node delivers."""
    one, two = nodes
    infos = await asyncio.gather(
        *(node.deliver("alice", prepare(MESSAGE)) for node in (one, two) for _ in range(100))
    )
    uids = sorted(info.uid for info in infos)
    # One counter row, locked by each delivery: no duplicates and no gaps.
    assert uids == list(range(1, 201))
    assert [info.uid for info in await two.snapshot("alice")] == uids

    assert await one.delete("alice", [200, 199, 5]) == 3
    again = await asyncio.gather(
        one.deliver("alice", prepare(MESSAGE)), two.deliver("alice", prepare(MESSAGE))
    )
    assert sorted(info.uid for info in again) == [201, 202]


async def test_concurrent_deliveries_never_exceed_quota_e0004(nodes) -> None:
    """E0004: delivery over quota is refused; the check and insert are atomic across nodes."""
    one, two = nodes
    new = prepare(MESSAGE)
    quota = 7 * new.size
    results = await asyncio.gather(
        *(node.deliver("alice", new, quota=quota) for node in (one, two) for _ in range(10)),
        return_exceptions=True,
    )
    stored = [r for r in results if isinstance(r, MessageInfo)]
    refused = [r for r in results if isinstance(r, DeliveryRefused)]
    assert (len(stored), len(refused)) == (7, 13)
    assert await one.usage("alice") == quota
    # Refusals consume no unique-id.
    assert sorted(info.uid for info in stored) == list(range(1, 8))


async def test_quota_warning_flag_is_won_by_one_node_e0004(nodes) -> None:
    """E0004: crossing the warning threshold puts ONE warning message into the maildrop."""
    one, two = nodes
    previous = await asyncio.gather(
        *(node.set_quota_warned("alice", warned=True) for node in (one, two) for _ in range(10))
    )
    assert sorted(previous) == [False] + [True] * 19


async def test_imports_and_deliveries_from_two_nodes_share_one_counter_c0008(nodes) -> None:
    """C0008: imported and delivered messages never share a uid, whatever the interleaving."""
    one, two = nodes
    batches = [
        [dataclasses.replace(prepare(MESSAGE), import_key=f"k{n}-{i}") for i in range(5)]
        for n in range(10)
    ]
    results = await asyncio.gather(
        *(one.import_messages("alice", batch) for batch in batches),
        *(two.deliver("alice", prepare(MESSAGE)) for _ in range(50)),
        two.import_messages("alice", batches[0]),  # a re-run racing the first run
    )
    uids = [info.uid for result in results for info in _as_list(result)]
    assert sorted(uids) == list(range(1, 101))
    # Each batch took consecutive uids: the counter lock is held for the whole batch.
    for stored in results[:10]:
        batch_uids = [info.uid for info in _as_list(stored)]
        assert batch_uids == list(range(batch_uids[0], batch_uids[0] + 5)) or batch_uids == []


def _as_list(result):
    return [result] if isinstance(result, MessageInfo) else list(result)


async def test_lock_lease_is_shared_by_nodes_and_expires_c0004(nodes, clock: FakeClock) -> None:
    """C0004: a second login gets [IN-USE]; a crashed node's lease runs out and is taken over."""
    one, two = nodes
    await one.acquire_lock("alice", "node1-session", 60.0)
    with pytest.raises(MaildropLocked):
        await two.acquire_lock("alice", "node2-session", 60.0)
    clock.now += 59.9
    with pytest.raises(MaildropLocked):
        await two.acquire_lock("alice", "node2-session", 60.0)
    clock.now += 0.1  # node 1 "crashed": it never renewed or released
    await two.acquire_lock("alice", "node2-session", 60.0)
    with pytest.raises(MaildropLocked):
        await one.acquire_lock("alice", "node1-session", 60.0)
    await one.release_lock("alice", "node1-session")  # not the holder: nothing happens
    with pytest.raises(MaildropLocked):
        await one.acquire_lock("alice", "node1-session", 60.0)


async def test_racing_for_a_free_lock_has_exactly_one_winner_c0004(nodes) -> None:
    """C0004: of two logins racing for one maildrop, exactly one gets it."""
    one, two = nodes
    for round_ in range(20):
        results = await asyncio.gather(
            one.acquire_lock("alice", f"a{round_}", 60.0),
            two.acquire_lock("alice", f"b{round_}", 60.0),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["MaildropLocked", "NoneType"]
        for owner in (f"a{round_}", f"b{round_}"):
            await one.release_lock("alice", owner)


# -- store-specific details ------------------------------------------------------


async def test_list_users_is_in_code_point_order(nodes) -> None:
    """list_users: 'Every user, ordered by name' -- the order of Python's sorted()."""
    one, _ = nodes
    for name in ("b", "B", "é", "a", "Z"):
        await one.add_user(name, {})
    names = [user.name for user in await one.list_users()]
    assert names == sorted(names)


async def test_mark_retrieved_keeps_first_time_e0005(nodes) -> None:
    """E0005: retention tells retrieved messages (and when) from never-retrieved ones."""
    one, two = nodes
    first = await one.deliver("alice", prepare(MESSAGE))
    second = await one.deliver("alice", prepare(MESSAGE))
    await one.mark_retrieved("alice", [first.uid, 999], 100.0)
    await two.mark_retrieved("alice", [first.uid], 200.0)
    state = await two.export_state("alice")
    assert dict(state.retrieved_at) == {first.uid: 100.0}
    assert state.next_uid == second.uid + 1


async def test_large_bodies_are_compressed_with_lz4_and_read_back_whole(nodes, pg_dsn: str) -> None:
    """Migration 0008: a body stored out of its row is LZ4-compressed, where the server can."""
    one, _ = nodes
    text = b"".join(b"line %d of a long and rather repetitive letter\r\n" % n for n in range(4000))
    message = b"Subject: long\r\n\r\n" + text
    delivered = await one.deliver("alice", prepare(message))
    conn = await _admin(pg_dsn)
    try:
        version = int(await conn.fetchval("SHOW server_version_num"))
        method, stored = await conn.fetchrow(
            "SELECT pg_column_compression(wire), pg_column_size(wire) FROM messages WHERE uid = $1",
            delivered.uid,
        )
    finally:
        await conn.close()
    if version >= 140000:  # the Debian packages popbox is tested with are built with lz4
        assert method == "lz4"
    assert stored < len(message) // 2
    assert await one.fetch("alice", delivered.uid) == prepare(message).wire


def test_factory_builds_postgres_store_and_needs_a_dsn(tmp_path: Path) -> None:
    """[storage] backend = "postgresql" needs [storage] dsn."""
    assert isinstance(
        open_store("postgresql", data_dir=tmp_path, dsn="postgresql://x/y"), PostgresStore
    )
    with pytest.raises(StorePermanentError, match="dsn"):
        open_store("postgresql", data_dir=tmp_path, dsn="")


# -- failures ---------------------------------------------------------------------


async def test_unreachable_server_is_temporary() -> None:
    """RFC 3206 SYS/TEMP: a database that is down is a condition to retry, not to fix."""
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/x", connect_timeout=5.0)
    with pytest.raises(StoreTemporaryError):
        await store.open()
    with pytest.raises(RuntimeError):  # a failed open leaves the store closed
        await store.snapshot("alice")


async def test_missing_database_and_bad_dsn_are_permanent(pg_dsn: str) -> None:
    """RFC 3206 SYS/PERM: a wrong database name or address needs an administrator."""
    missing = pg_dsn.rsplit("/", 1)[0] + "/popbox_no_such_database"
    for dsn in (missing, "postgresql://127.0.0.1:5432/x?sslmode=nonsense"):
        with pytest.raises(StorePermanentError):
            await PostgresStore(dsn, connect_timeout=5.0).open()


async def test_connection_killed_mid_delivery_is_temporary_then_recovers(
    pg_dsn: str, clock: FakeClock
) -> None:
    """A lost connection gives SYS/TEMP, stores nothing, and the next call reconnects."""
    store = PostgresStore(pg_dsn, clock=clock, max_size=1)
    await store.open()
    holder, watcher = await _admin(pg_dsn), await _admin(pg_dsn)
    try:
        await store.add_user("alice", {})
        # Hold the counter row so that the delivery waits where we can see it.
        blocker = holder.transaction()
        await blocker.start()
        await holder.execute("SELECT 1 FROM users WHERE name = 'alice' FOR UPDATE")
        delivery = asyncio.create_task(store.deliver("alice", prepare(MESSAGE)))
        pid = await _lock_waiter(watcher)
        await watcher.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(StoreTemporaryError):
            await asyncio.wait_for(delivery, 10)
        await blocker.rollback()

        info = await store.deliver("alice", prepare(MESSAGE))
        assert info.uid == 1  # the lost delivery committed nothing, counter included
        assert await store.snapshot("alice") == [info]
    finally:
        await holder.close()
        await watcher.close()
        await store.close()


async def test_statement_timeout_is_temporary(pg_dsn: str) -> None:
    """Every wait is bounded: a delivery stuck behind a lock ends in SYS/TEMP."""
    store = PostgresStore(pg_dsn, command_timeout=0.5)
    await store.open()
    holder = await _admin(pg_dsn)
    try:
        await store.add_user("alice", {})
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM users WHERE name = 'alice' FOR UPDATE")
            with pytest.raises(StoreTemporaryError):
                await store.deliver("alice", prepare(MESSAGE))
        assert (await store.deliver("alice", prepare(MESSAGE))).uid == 1
    finally:
        await holder.close()
        await store.close()


async def test_schema_surprise_is_permanent(nodes, pg_dsn: str) -> None:
    """A table missing from under the store is for an administrator (SYS/PERM)."""
    conn = await _admin(pg_dsn)
    try:
        await conn.execute("DROP TABLE messages")
    finally:
        await conn.close()
    with pytest.raises(StorePermanentError):
        await nodes[0].snapshot("alice")


async def test_calls_after_close_are_refused(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError):
        await store.get_user("alice")


async def _lock_waiter(watcher: Any) -> int:
    # pg_stat_activity is read outside any transaction: inside one it is a frozen copy.
    for _ in range(200):
        pid = await watcher.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' LIMIT 1"
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.025)
    pytest.fail("the delivery never waited for the row lock")


# -- migrations ---------------------------------------------------------------------


async def test_upgrade_from_version_1_keeps_data(pg_dsn: str, clock: FakeClock) -> None:
    """Opening a version-1 database applies 0002 and every user and message survives."""
    steps = migrate.load("postgresql")
    assert len(steps) >= 2
    conn = await _admin(pg_dsn)
    try:
        await ops.apply_migrations(conn, steps[:1], clock)
        user_id = await conn.fetchval(
            "INSERT INTO users (name, verifiers, quota, next_uid, created)"
            " VALUES ('alice', '{\"argon2id\": \"x\"}', 5000, 8, 0) RETURNING id"
        )
        await conn.execute(
            "INSERT INTO messages (user_id, uid, size, stored_size, received_at, legacy_uidl,"
            " wire) VALUES ($1, 7, 4, 5, 12.5, 'old-1', $2)",
            user_id,
            b"..x\r\n",
        )
    finally:
        await conn.close()

    store = PostgresStore(pg_dsn, clock=clock)
    await store.open()
    try:
        assert await store.get_user("alice") == UserRecord("alice", {"argon2id": "x"}, 5000)
        assert await store.snapshot("alice") == [MessageInfo(7, 4, 5, 12.5, "old-1")]
        assert await store.fetch("alice", 7) == b"..x\r\n"
        assert (await store.deliver("alice", prepare(MESSAGE))).uid == 8
        # What 0002 added works on the upgraded rows.
        assert await store.set_quota_warned("alice", warned=True) is False
        assert await store.expire("alice", retrieved_before=None, unretrieved_before=13.0) == 1
    finally:
        await store.close()
    conn = await _admin(pg_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
        index = await conn.fetchval("SELECT to_regclass('messages_retention')")
    finally:
        await conn.close()
    assert versions == [step.version for step in steps]
    assert index is not None


async def test_database_newer_than_code_is_refused(pg_dsn: str, clock: FakeClock) -> None:
    """A schema from a newer popbox must not be used by an older one (SYS/PERM)."""
    store = PostgresStore(pg_dsn, clock=clock)
    await store.open()
    await store.close()
    conn = await _admin(pg_dsn)
    try:
        await conn.execute("INSERT INTO schema_version VALUES (999, 'future')")
    finally:
        await conn.close()
    with pytest.raises(migrate.MigrationError):
        await PostgresStore(pg_dsn, clock=clock).open()
