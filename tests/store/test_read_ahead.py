"""SQLite's read-ahead: several bodies in one read, never handed out once stale (C0004).

A copy read by ``read_ahead`` may be used only while no message has left its mailbox
since the read began.  Every removal (UPDATE's delete, expiry, a deleted user) by any
process on the file bumps a counter in the shared ``-changes`` file beside it, so these
tests remove messages through a second store on the same file, as another worker
would, and through a separate process, and check that the copy then hands out nothing.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from popbox.observability.metrics import Metrics, timed_store
from popbox.store.base import StorePermanentError
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare
from popbox.store.readahead import SLOTS, ChangeBeacon, beacon_path
from popbox.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TEXTS = [b"Subject: %d\r\n\r\n.dot line %d\r\n" % (n, n) for n in range(1, 6)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "mail.sqlite3"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(path)
    await opened.open()
    await opened.add_user("alice", {})
    await opened.add_user("bob", {})
    yield opened
    await opened.close()


@pytest.fixture
async def other(store: SqliteStore, path: Path) -> AsyncIterator[SqliteStore]:
    """A second store on the same file: what another worker process has."""
    opened = SqliteStore(path)
    await opened.open()
    yield opened
    await opened.close()


async def deliver_all(store: SqliteStore, name: str = "alice") -> list[int]:
    return [(await store.deliver(name, prepare(text))).uid for text in TEXTS]


def wire(text: bytes) -> bytes:
    return prepare(text).wire


async def test_read_ahead_hands_out_each_body_once(store: SqliteStore) -> None:
    uids = await deliver_all(store)
    ahead = store.read_ahead("alice", uids[:3])
    assert len(ahead) == 3
    assert ahead.take(uids[1]) == wire(TEXTS[1])  # stuffed: ".." in the wire form
    assert ahead.take(uids[1]) is None  # handed out once: memory goes as RETRs come
    assert ahead.take(uids[0]) == wire(TEXTS[0])
    assert ahead.take(uids[3]) is None  # not asked for: the caller reads it itself
    assert len(ahead) == 1


async def test_a_body_removed_before_the_read_is_not_in_it_c0004(
    store: SqliteStore, other: SqliteStore
) -> None:
    uids = await deliver_all(store)
    await other.delete("alice", [uids[1]])
    ahead = store.read_ahead("alice", uids)
    assert ahead.take(uids[1]) is None
    assert ahead.take(uids[2]) == wire(TEXTS[2])


@pytest.mark.parametrize("removal", ["delete", "expire", "delete_user"])
async def test_a_removal_by_another_store_makes_the_copy_stale_c0004(
    store: SqliteStore, other: SqliteStore, removal: str
) -> None:
    uids = await deliver_all(store)
    ahead = store.read_ahead("alice", uids)
    assert ahead.take(uids[0]) == wire(TEXTS[0])
    if removal == "delete":
        assert await other.delete("alice", [uids[4]]) == 1
    elif removal == "expire":
        await other.expire("alice", retrieved_before=None, unretrieved_before=1e12)
    else:
        await other.delete_user("alice")
    # Every body, not only the removed one: the copy cannot tell which one went.
    assert [ahead.take(uid) for uid in uids[1:]] == [None] * 4
    assert len(ahead) == 0  # and it lets go of them


async def test_removals_in_another_mailbox_leave_the_copy_alone(
    store: SqliteStore, other: SqliteStore
) -> None:
    uids = await deliver_all(store)
    [bob_uid] = (await deliver_all(store, "bob"))[:1]
    assert ChangeBeacon.slot_of("alice") != ChangeBeacon.slot_of("bob")
    ahead = store.read_ahead("alice", uids)
    await other.delete("bob", [bob_uid])
    await other.deliver("alice", prepare(b"Subject: late\r\n\r\nnew mail\r\n"))  # not a removal
    await other.mark_retrieved("alice", uids, 1.0)  # nor is this
    assert ahead.take(uids[2]) == wire(TEXTS[2])


async def test_a_removal_in_another_process_makes_the_copy_stale_c0004(
    store: SqliteStore, path: Path
) -> None:
    """The counters are shared memory between processes, not a per-process cache."""
    uids = await deliver_all(store)
    ahead = store.read_ahead("alice", uids)
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib
        from popbox.store.sqlite import SqliteStore

        async def main():
            store = SqliteStore(pathlib.Path({str(path)!r}))
            await store.open()
            print(await store.delete("alice", [{uids[3]}]))
            await store.close()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert ahead.take(uids[0]) is None
    assert store.fetch_now("alice", uids[3]) is None  # what the session reads instead
    assert store.fetch_now("alice", uids[0]) == wire(TEXTS[0])


async def test_the_counters_file_is_shared_and_sized(path: Path, store: SqliteStore) -> None:
    counters = beacon_path(path)
    assert counters.name == "mail.sqlite3-changes"
    assert counters.stat().st_size == SLOTS * 8
    assert stat.S_IMODE(counters.stat().st_mode) == stat.S_IMODE(path.stat().st_mode) & 0o666
    first = ChangeBeacon(counters, like=path)
    second = ChangeBeacon(counters, like=path)
    slot = ChangeBeacon.slot_of("carol")
    before = second.value(slot)
    first.bump("carol")
    assert second.value(slot) == before + 1
    assert counters.stat().st_size == SLOTS * 8  # opening again does not resize or reset


async def test_a_counters_file_that_cannot_be_opened_fails_the_open(path: Path) -> None:
    """Without the counters a removal could not reach other workers' copies: refuse."""
    path.parent.mkdir(parents=True)
    beacon_path(path).mkdir()  # not a file: opening it fails, as a permission error would
    store = SqliteStore(path)
    with pytest.raises(StorePermanentError, match=r"mail\.sqlite3-changes"):
        await store.open()


async def test_timed_store_times_read_ahead_and_memory_does_not_read_ahead(
    store: SqliteStore,
) -> None:
    uids = await deliver_all(store)
    metrics = Metrics()
    timed = timed_store(store, metrics)
    assert timed.read_ahead("alice", uids).take(uids[0]) == wire(TEXTS[0])
    rendered = metrics.render().decode()
    assert 'popbox_store_operation_seconds_count{operation="read_ahead"} 1.0' in rendered
    memory = MemoryStore()
    await memory.open()
    assert memory.read_ahead("alice", uids) is None  # its fetch_now is a dict lookup
