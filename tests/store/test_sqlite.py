"""SQLite-only behaviour: pragmas, migrations bookkeeping, concurrency and error mapping."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from popbox.store import SQLITE_FILE_NAME, migrate, open_store
from popbox.store.base import StorePermanentError, StoreTemporaryError
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare
from popbox.store.sqlite import SqliteStore
from popbox.store.sqlite_maildrop import INLINE_FETCH

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "db" / "mail.sqlite3", busy_timeout=0.05)
    await opened.open()
    await opened.add_user("alice", {})
    yield opened
    await opened.close()


def _raw(store_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(store_path, isolation_level=None)


def test_open_store_builds_sqlite_in_data_dir(tmp_path: Path) -> None:
    """DESIGN section 5: data_dir holds the SQLite database."""
    store = open_store("sqlite", data_dir=tmp_path, dsn="")
    assert isinstance(store, SqliteStore)
    assert store._path == tmp_path / SQLITE_FILE_NAME
    assert isinstance(open_store("memory", data_dir=tmp_path, dsn=""), MemoryStore)


def test_open_store_rejects_unknown_backend(tmp_path: Path) -> None:
    """A backend name no version knows fails clearly instead of picking a default."""
    with pytest.raises(ValueError, match="unknown storage backend"):
        open_store("mysql", data_dir=tmp_path, dsn="")


async def test_wal_and_foreign_keys_are_on(store: SqliteStore, tmp_path: Path) -> None:
    """Writes are durable (synchronous=FULL on a WAL database) and cascades are enforced."""
    conn = _raw(tmp_path / "db" / "mail.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    await store.deliver("alice", prepare(MESSAGE))
    await store.acquire_lock("alice", "s1", 60.0)
    await store.delete_user("alice")  # ON DELETE CASCADE needs foreign_keys = ON
    conn = _raw(tmp_path / "db" / "mail.sqlite3")
    try:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM locks").fetchone()[0] == 0
    finally:
        conn.close()


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    """Each migration is applied once and recorded in schema_version."""
    path = tmp_path / "mail.sqlite3"
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    conn = _raw(path)
    try:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    finally:
        conn.close()
    assert versions == [m.version for m in migrate.load("sqlite")]


async def test_snapshot_reads_the_covering_index_not_bodies(
    store: SqliteStore, tmp_path: Path
) -> None:
    """2.1.4: STAT, LIST and UIDL never read message bodies."""
    conn = _raw(tmp_path / "db" / "mail.sqlite3")
    try:
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT m.uid, m.size, m.stored_size, m.received_at,"
                " m.legacy_uidl FROM users AS u LEFT JOIN messages AS m ON m.user_id = u.id"
                " WHERE u.name = ? ORDER BY m.uid",
                ("alice",),
            )
        )
    finally:
        conn.close()
    assert "COVERING INDEX messages_snapshot" in plan


async def test_foreign_write_lock_is_temporary_and_reads_go_on(
    store: SqliteStore, tmp_path: Path
) -> None:
    """RFC 3206 SYS/TEMP: 'try again later'; WAL readers do not wait for the writer."""
    info = await store.deliver("alice", prepare(MESSAGE))
    other = _raw(tmp_path / "db" / "mail.sqlite3")
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreTemporaryError):
            await store.deliver("alice", prepare(MESSAGE))
        assert await store.snapshot("alice") == [info]
        assert await store.fetch("alice", info.uid) == prepare(MESSAGE).wire
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await store.deliver("alice", prepare(MESSAGE))).uid == info.uid + 1


async def test_corrupt_file_is_a_permanent_error(tmp_path: Path) -> None:
    """RFC 3206 SYS/PERM: the failure will not go away until an administrator acts."""
    path = tmp_path / "mail.sqlite3"
    path.write_bytes(b"this is not a database" * 500)
    store = SqliteStore(path)
    with pytest.raises(StorePermanentError):
        await store.open()


async def test_newer_schema_refuses_to_open(tmp_path: Path) -> None:
    """A database written by a newer popbox is not touched by an older one."""
    path = tmp_path / "mail.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    conn = _raw(path)
    conn.execute("INSERT INTO schema_version VALUES (9999, 'future')")
    conn.close()
    with pytest.raises(migrate.MigrationError):
        await SqliteStore(path).open()


async def test_calls_outside_open_raise(tmp_path: Path) -> None:
    """A store is usable only between open() and close()."""
    store = SqliteStore(tmp_path / "mail.sqlite3")
    with pytest.raises(RuntimeError):
        await store.get_user("alice")
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError):
        await store.get_user("alice")


@pytest.mark.parametrize("octets", [10, INLINE_FETCH - 64, INLINE_FETCH + 1, 3 * INLINE_FETCH])
async def test_fetch_returns_the_exact_wire_form_either_side_of_the_inline_limit(
    store: SqliteStore, octets: int
) -> None:
    """Small bodies are read on the loop's thread, large ones on the read pool: both give
    back exactly the stored wire form, and None once the message is gone."""
    body = (b"x" * 75 + b"\r\n") * (octets // 77 + 1)
    info = await store.deliver("alice", prepare(b"Subject: big\r\n\r\n" + body))
    handle = await store.open_maildrop("alice")
    wire = await handle.body(info.uid)
    assert wire is not None
    assert wire == b"Subject: big\r\n\r\n" + body
    assert await store.fetch("alice", info.uid) == wire
    await store.delete("alice", [info.uid])
    assert await handle.body(info.uid) is None
