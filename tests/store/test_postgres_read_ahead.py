"""PostgreSQL's read-ahead: a download served from one read, never a removed body (C0004).

A session's ``PostgresMaildrop`` reads the next few small bodies of a download in one
statement and uses that copy under a lease; every removal, from any node, waits out the
leases of other sessions before it commits (``store/postgres_readahead.py``).  Two
``PostgresStore`` instances on one database stand for two nodes (they share nothing but
the database), and one test removes from a separate process.  Each C0004 test would
fail if a removal committed while a copy holding its message could still be used: the
RETR after the removal would then be answered from the copy.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from popbox.store.base import Pending
from popbox.store.message import prepare

if not os.environ.get("PG_DSN"):
    pytest.importorskip("asyncpg")
import asyncpg

from popbox.store import postgres_readahead as ahead
from popbox.store.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from popbox.store.postgres_maildrop import PostgresMaildrop

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

TEXTS = [b"Subject: %d\r\n\r\n.dot line %d\r\n" % (n, n) for n in range(1, 6)]
LEASE = 1.5  # seconds: short, so that a removal held up by a lease returns soon


def wire(text: bytes) -> bytes:
    return prepare(text).wire


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two nodes on one database; alice has the five messages of ``TEXTS``."""
    stores = [PostgresStore(pg_dsn, max_size=4, read_ahead_lifetime=LEASE) for _ in range(2)]
    try:
        for store in stores:
            await store.open()
        await stores[0].add_user("alice", {})
        await stores[0].import_messages("alice", [prepare(text) for text in TEXTS])
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()


async def _admin(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn, timeout=5.0, command_timeout=30.0)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close(timeout=5.0)


async def remove_behind_the_leases_back(dsn: str, uids: list[int]) -> None:
    """What no popbox removal does: delete without waiting for the leases."""
    await _admin(dsn, "DELETE FROM messages WHERE uid = ANY($1::bigint[])", uids)


async def retr(handle: PostgresMaildrop, uid: int) -> bytes | None:
    """What the session does for RETR: ``body_now``, then ``body`` if that must wait."""
    wire = handle.body_now(uid)
    return await handle.body(uid) if wire is Pending.FETCH else wire


async def test_a_download_is_served_from_one_read(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    """RETR 1 reads the following small bodies with it; RETR 2.. are answered at once."""
    store, _ = nodes
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    assert handle.body_now(uids[0]) is Pending.FETCH  # nothing read yet
    assert await handle.body(uids[0]) == wire(TEXTS[0])
    await remove_behind_the_leases_back(pg_dsn, uids[1:])
    assert [handle.body_now(uid) for uid in uids[1:]] == [wire(text) for text in TEXTS[1:]]
    assert handle.body_now(uids[2]) is Pending.FETCH  # handed out once: read anew
    assert await handle.body(uids[2]) is None  # and now it is gone


async def test_a_body_removed_before_the_read_is_not_in_it_c0004(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    store, other = nodes
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    assert await other.delete("alice", [uids[1]]) == 1  # no lease yet: no wait
    assert await retr(handle, uids[0]) == wire(TEXTS[0])
    assert handle.body_now(uids[1]) is Pending.FETCH
    assert await retr(handle, uids[1]) is None
    assert await retr(handle, uids[2]) == wire(TEXTS[2])


@pytest.mark.parametrize("removal", ["delete", "commit", "expire", "delete_user"])
async def test_a_removal_by_another_node_is_never_answered_from_the_copy_c0004(
    nodes: tuple[PostgresStore, PostgresStore], removal: str
) -> None:
    """The removal returns once the copy is unusable; every later RETR of it is -ERR."""
    store, other = nodes
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    assert await retr(handle, uids[0]) == wire(TEXTS[0])  # uids[1:] read ahead
    if removal == "delete":
        assert await other.delete("alice", [uids[3]]) == 1
    elif removal == "commit":
        assert await (await other.open_maildrop("alice")).commit([uids[3]], [], 1.0) == 1
    elif removal == "expire":
        assert await other.expire("alice", retrieved_before=None, unretrieved_before=1e12) == 5
    else:
        await other.delete_user("alice")
    gone = uids[3:4] if removal in {"delete", "commit"} else uids
    for uid in uids[1:]:
        assert await retr(handle, uid) == (None if uid in gone else wire(TEXTS[uids.index(uid)]))


async def test_a_removal_in_another_process_is_never_answered_from_the_copy_c0004(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    """Leases live in the database, not in a process: a node of its own waits too."""
    store, _ = nodes
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    assert await retr(handle, uids[0]) == wire(TEXTS[0])
    script = textwrap.dedent(
        f"""
        import asyncio
        from popbox.store.postgres import PostgresStore

        async def main():
            store = PostgresStore({pg_dsn!r}, max_size=1)
            await store.open()
            handle = await store.open_maildrop("alice")
            print(await handle.commit([{uids[2]}], [], 1.0))
            await store.close()

        asyncio.run(main())
        """
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert await retr(handle, uids[1]) == wire(TEXTS[1])
    assert await retr(handle, uids[2]) is None


async def test_a_read_ahead_waits_for_a_removal_that_waits_c0004(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """A copy read while a removal is under way is read after it: it lacks the message."""
    store, other = nodes
    first = await store.open_maildrop("alice")
    uids = [info.uid for info in first.messages]
    assert await retr(first, uids[0]) == wire(TEXTS[0])  # a lease the removal waits for
    removal = asyncio.create_task(other.delete("alice", [uids[2]]))
    # Time for the removal to take the lease row and start waiting: a second session's
    # read-ahead then queues behind it.  Should it come first instead, the removal waits
    # for its lease too; either way no copy may hold the removed message afterwards.
    await asyncio.sleep(0.3)
    second = await store.open_maildrop("alice")
    assert await retr(second, uids[0]) == wire(TEXTS[0])
    assert await asyncio.wait_for(removal, 60) == 1
    assert await retr(second, uids[1]) == wire(TEXTS[1])
    assert await retr(second, uids[2]) is None
    assert await retr(first, uids[2]) is None


async def test_a_sessions_own_update_does_not_wait_for_its_own_lease(pg_dsn: str) -> None:
    """Its copies end with the session: a download-and-delete QUIT is not held up."""
    store = PostgresStore(pg_dsn, max_size=2, read_ahead_lifetime=3600.0)
    await store.open()
    try:
        await store.add_user("alice", {})
        await store.import_messages("alice", [prepare(text) for text in TEXTS])
        handle = await store.open_maildrop("alice")
        uids = [info.uid for info in handle.messages]
        assert await retr(handle, uids[0]) == wire(TEXTS[0])
        # An hour's lease: waiting for it would run into the timeout.
        assert await asyncio.wait_for(handle.commit(uids, [], 1.0), 60) == len(uids)
    finally:
        await store.close()


async def test_a_session_that_ended_holds_up_no_removal(pg_dsn: str) -> None:
    """UPDATE ends the session's lease: the next session's DELE+QUIT does not wait for it."""
    store = PostgresStore(pg_dsn, max_size=2, read_ahead_lifetime=3600.0)
    await store.open()
    try:
        await store.add_user("alice", {})
        await store.import_messages("alice", [prepare(text) for text in TEXTS])
        first = await store.open_maildrop("alice")
        uids = [info.uid for info in first.messages]
        assert await retr(first, uids[0]) == wire(TEXTS[0])
        assert await first.commit([], [uids[0]], 1.0) == 0  # QUIT after a download
        second = await store.open_maildrop("alice")
        assert await retr(second, uids[0]) == wire(TEXTS[0])
        # Waiting for the first session's hour-long lease would run into the timeout.
        assert await asyncio.wait_for(second.commit(uids[:2], [], 1.0), 60) == 2
        assert await asyncio.wait_for(store.delete("alice", uids[2:3]), 60) == 1
    finally:
        await store.close()


async def test_leases_lost_to_a_crash_make_the_next_removal_wait_c0004(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    """An UNLOGGED table is empty after a crash or a failover; the removal waits anyway."""
    store, other = nodes
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    assert await retr(handle, uids[0]) == wire(TEXTS[0])
    await _admin(pg_dsn, "TRUNCATE read_ahead")  # what crash recovery does to it
    began = time.monotonic()
    assert await other.delete("alice", [uids[1]]) == 1
    # Not a timing assertion: the removal must not return before the copy is unusable,
    # and the copy's own clock says whether it still is.
    assert handle.body_now(uids[1]) is Pending.FETCH
    assert time.monotonic() - began >= LEASE * 0.5
    assert await retr(handle, uids[1]) is None
    assert await retr(handle, uids[2]) == wire(TEXTS[2])


def test_a_copy_hands_out_each_body_once_and_nothing_after_its_lease() -> None:
    budget = ahead.AheadBudget()
    copy = ahead.LeasedCopy({1: b"one", 2: b"two"}, time.monotonic() + 3600, budget)
    assert copy.take(2) == b"two"
    assert copy.take(2) is None
    assert copy.take(3) is None  # not read: the caller reads it itself
    assert len(copy) == 1
    expired = ahead.LeasedCopy({1: b"one"}, time.monotonic() - 1, budget)
    assert expired.take(1) is None
    assert len(expired) == 0  # dropped with the lease


async def test_the_copies_give_their_octets_back_whatever_ends_them(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Handed out, dropped by UPDATE or by the end of the session: the budget is whole."""
    store, _ = nodes
    budget = store.read_ahead_budget
    handle = await store.open_maildrop("alice")
    uids = [info.uid for info in handle.messages]
    await retr(handle, uids[0])
    held = budget.held
    assert held == sum(len(wire(text)) for text in TEXTS[1:])
    await retr(handle, uids[1])
    assert budget.held == held - len(wire(TEXTS[1]))
    await handle.commit([], [], 0.0)  # UPDATE ends the copy
    assert budget.held == 0
    again = await store.open_maildrop("alice")
    await retr(again, uids[0])
    assert budget.held > 0
    await again.close()
    assert budget.held == 0


async def test_a_full_budget_makes_a_session_read_its_bodies_one_by_one(
    nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many sessions downloading at once hold at most the process's budget in copies."""
    store, _ = nodes
    store.read_ahead_budget.limit = len(wire(TEXTS[0]))  # too small for any run
    reads: list[str] = []
    fetch, fetch_ahead = store.fetch, store.fetch_ahead

    async def counted_fetch(name: str, uid: int) -> bytes | None:
        reads.append("one")
        return await fetch(name, uid)

    async def counted_ahead(*args: Any) -> dict[int, bytes]:
        reads.append("ahead")
        return await fetch_ahead(*args)

    monkeypatch.setattr(store, "fetch", counted_fetch)
    monkeypatch.setattr(store, "fetch_ahead", counted_ahead)
    handle = await store.open_maildrop("alice")
    bodies = [await retr(handle, info.uid) for info in handle.messages]
    assert bodies == [wire(text) for text in TEXTS]
    assert reads == ["one"] * len(TEXTS)
    assert store.read_ahead_budget.held == 0
