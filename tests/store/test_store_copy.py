"""copy_store: moving users and mail between backends without changing a single UIDL."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import pytest

from popbox.store.base import MailStore, UserExists
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare
from popbox.store.sqlite import SqliteStore
from popbox.store.store_copy import copy_store

# Skipped without the driver, unless PG_DSN says these tests must run (CI).
if not os.environ.get("PG_DSN"):
    pytest.importorskip("asyncpg")
from popbox.store.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from popbox.store.base import NewMessage

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def _keyed(key: str) -> NewMessage:
    return dataclasses.replace(prepare(b"A: b\r\n\r\nimported\r\n"), import_key=key)


def _clock() -> float:
    return 1_700_000_000.0


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def source(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailStore]:
    store: MailStore
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "source.sqlite3", clock=_clock)
    elif request.param == "memory":
        store = MemoryStore(clock=_clock)
    else:
        store = PostgresStore(str(request.getfixturevalue("pg_dsn")), clock=_clock)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def target(pg_new_database: Callable[[], str]) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_new_database(), clock=_clock)
    await store.open()
    yield store
    await store.close()


async def _fill(store: MailStore) -> None:
    await store.add_user("alice", {"argon2id": "$argon2id$a", "nt": "n"}, quota=100_000)
    await store.add_user("bob", {})
    await store.add_user("carol", {"argon2id": "c"})  # an empty maildrop
    await store.deliver(
        "alice", prepare(b"A: b\r\n\r\nimported\r\n", legacy_uidl="dovecot-00a1", received_at=5.5)
    )
    for n in range(6):
        await store.deliver("alice", prepare(b"Subject: %d\r\n\r\n.dot\r\n" % n))
    await store.deliver("bob", prepare(b"A: b\r\n\r\n8-bit \xe9\r\n"))
    # uid 4 from the middle and uid 7 from the top: the target's counter must stay at 8,
    # not fall back to 7, or a new message would reuse a deleted message's UIDL.
    await store.delete("alice", [4, 7])
    await store.mark_retrieved("alice", [2, 3], 123.25)
    await store.set_quota_warned("alice", warned=True)
    await store.import_messages("bob", [_keyed("mbox:1"), _keyed("mbox:2")])
    await store.delete("bob", [2])  # the key stays: a re-import must not bring it back


async def test_copy_keeps_users_uidls_sizes_bodies_and_counters_c0009(
    source: MailStore, target: PostgresStore
) -> None:
    """C0009 / DESIGN section 3: migrating keeps UIDLs, so clients do not download again."""
    await _fill(source)
    seen: list[tuple[str, int]] = []

    copied = await copy_store(source, target, progress=lambda name, n: seen.append((name, n)))

    assert copied == 7
    assert seen == [("alice", 5), ("bob", 2), ("carol", 0)]
    assert await target.list_users() == await source.list_users()
    for name in ("alice", "bob", "carol"):
        listed = await source.snapshot(name)
        assert await target.snapshot(name) == listed
        assert [info.uidl for info in listed] == [info.uidl for info in await target.snapshot(name)]
        for info in listed:
            assert await target.fetch(name, info.uid) == await source.fetch(name, info.uid)
    assert [info.uidl for info in await target.snapshot("alice")] == [
        "dovecot-00a1",
        "2",
        "3",
        "5",
        "6",
    ]
    state = await target.export_state("alice")
    assert dict(state.retrieved_at) == {2: 123.25, 3: 123.25}
    # C0008: the counter came along, so deleted uid 7 is never handed out again.
    assert (await target.deliver("alice", prepare(b"A: b\r\n\r\nnew\r\n"))).uid == 8
    assert (await target.deliver("carol", prepare(b"A: b\r\n\r\nnew\r\n"))).uid == 1
    # E0004: the warning already sent is not sent again after the move.
    assert await target.set_quota_warned("alice", warned=True) is True
    assert await target.set_quota_warned("bob", warned=True) is False
    # Re-running the old import against the new store stores nothing twice.
    assert await target.import_messages("bob", [_keyed("mbox:1"), _keyed("mbox:2")]) == []


async def test_copy_refuses_existing_user_before_writing_anything(
    target: PostgresStore,
) -> None:
    """A clash is found before the first write, so a failed copy leaves the target as it was."""
    source = MemoryStore(clock=_clock)
    await source.add_user("alice", {})
    await source.add_user("zed", {})
    await source.deliver("alice", prepare(b"A: b\r\n\r\nx\r\n"))
    await target.add_user("zed", {"argon2id": "mine"})
    with pytest.raises(UserExists):
        await copy_store(source, target)
    assert [user.name for user in await target.list_users()] == ["zed"]


async def test_copy_needs_a_target_that_keeps_uids(tmp_path: Path) -> None:
    """A target that can only assign new uids would change every UIDL: refused."""
    source = MemoryStore(clock=_clock)
    target = SqliteStore(tmp_path / "t.sqlite3")
    await target.open()
    try:
        with pytest.raises(TypeError):
            await copy_store(source, target)
    finally:
        await target.close()
