"""SQLite's read-ahead: several bodies in one read, never handed out once stale (C0004).

A session's ``SqliteMaildrop`` reads the next few bodies of a download in one
statement; a copy may be used only while no message has left its mailbox since the read
began.  Every removal (UPDATE's commit, expiry, a deleted user) by any process on the
file bumps a counter in the shared ``-changes`` file beside it, so these tests remove
messages through a second store on the same file, as another worker would, and through
separate processes, and check that the handle then never hands out a removed body.
The bumps themselves must be atomic across processes: a lost increment can bring the
counter back to a value a reader saw before a removal.
"""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from popbox.store.base import StorePermanentError
from popbox.store.message import prepare
from popbox.store.readahead import SLOTS, ChangeBeacon, ReadAhead, beacon_path
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


async def remove_behind_the_beacons_back(path: Path, uids: list[int]) -> None:
    """Delete rows without bumping: a copy that still hands them out was not dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executemany("DELETE FROM messages WHERE uid = ?", [(uid,) for uid in uids])
    finally:
        conn.close()


async def test_a_copy_hands_out_each_body_once(path: Path, store: SqliteStore) -> None:
    beacon = ChangeBeacon(beacon_path(path), like=path)
    slot = ChangeBeacon.slot_of("alice")
    ahead = ReadAhead(beacon, slot, beacon.value(slot), {1: b"one", 2: b"two", 3: b"three"})
    assert ahead.take(2) == b"two"
    assert ahead.take(2) is None  # handed out once: memory goes as RETRs come
    assert ahead.take(1) == b"one"
    assert ahead.take(4) is None  # not read: the caller reads it itself
    assert len(ahead) == 1
    beacon.bump("alice")
    assert ahead.take(3) is None  # stale: dropped
    assert len(ahead) == 0


async def test_a_download_is_served_from_one_read(store: SqliteStore, path: Path) -> None:
    """RETR 1 reads the following small bodies with it; RETR 2.. are answered from them."""
    uids = await deliver_all(store)
    handle = await store.open_maildrop("alice")
    assert handle.body_now(uids[0]) == wire(TEXTS[0])
    await remove_behind_the_beacons_back(path, uids[1:])
    assert [handle.body_now(uid) for uid in uids[1:]] == [wire(text) for text in TEXTS[1:]]
    assert handle.body_now(uids[2]) is None  # asked again: handed out once, read anew


async def test_a_body_removed_before_the_read_is_not_in_it_c0004(
    store: SqliteStore, other: SqliteStore
) -> None:
    uids = await deliver_all(store)
    handle = await store.open_maildrop("alice")
    await other.delete("alice", [uids[1]])
    assert handle.body_now(uids[0]) == wire(TEXTS[0])
    assert handle.body_now(uids[1]) is None
    assert handle.body_now(uids[2]) == wire(TEXTS[2])


@pytest.mark.parametrize("removal", ["delete", "commit", "expire", "delete_user"])
async def test_a_removal_by_another_store_makes_the_copy_stale_c0004(
    store: SqliteStore, other: SqliteStore, removal: str
) -> None:
    uids = await deliver_all(store)
    handle = await store.open_maildrop("alice")
    assert handle.body_now(uids[0]) == wire(TEXTS[0])
    if removal == "delete":
        assert await other.delete("alice", [uids[4]]) == 1
    elif removal == "commit":
        assert await (await other.open_maildrop("alice")).commit([uids[4]], [], 1.0) == 1
    elif removal == "expire":
        await other.expire("alice", retrieved_before=None, unretrieved_before=1e12)
    else:
        await other.delete_user("alice")
    gone = uids[1:] if removal in {"expire", "delete_user"} else uids[4:]
    bodies = [handle.body_now(uid) for uid in uids[1:]]
    assert bodies == [None if uid in gone else wire(TEXTS[uids.index(uid)]) for uid in uids[1:]]


async def test_removals_in_another_mailbox_leave_the_copy_alone(
    store: SqliteStore, other: SqliteStore, path: Path
) -> None:
    uids = await deliver_all(store)
    [bob_uid] = (await deliver_all(store, "bob"))[:1]
    assert ChangeBeacon.slot_of("alice") != ChangeBeacon.slot_of("bob")
    handle = await store.open_maildrop("alice")
    assert handle.body_now(uids[0]) == wire(TEXTS[0])
    await other.delete("bob", [bob_uid])
    await other.deliver("alice", prepare(b"Subject: late\r\n\r\nnew mail\r\n"))  # not a removal
    await remove_behind_the_beacons_back(path, [uids[2]])
    assert handle.body_now(uids[1]) == wire(TEXTS[1])
    assert handle.body_now(uids[2]) == wire(TEXTS[2])  # from the copy: it was kept


async def test_a_removal_in_another_process_makes_the_copy_stale_c0004(
    store: SqliteStore, path: Path
) -> None:
    """The counters are shared memory between processes, not a per-process cache."""
    uids = await deliver_all(store)
    handle = await store.open_maildrop("alice")
    assert handle.body_now(uids[0]) == wire(TEXTS[0])
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
    assert handle.body_now(uids[1]) == wire(TEXTS[1])
    assert handle.body_now(uids[3]) is None  # read anew, not from the stale copy


BUMPERS = 4
BUMPS = 20_000


def test_bumps_from_several_processes_are_never_lost_c0004(path: Path) -> None:
    """Removals from several processes at once: every bump counts.

    A bump is a read-modify-write of a counter shared between processes.  Unserialised,
    two processes read the same value and one increment is lost; worse, a process that
    read long ago writes an old value back, and a copy read before a later removal
    looks fresh again (C0004).  Four processes bump one mailbox's counter, released
    together; the counter must have moved by exactly the number of bumps.
    """
    path.parent.mkdir(parents=True)
    path.touch()
    counters = beacon_path(path)
    beacon = ChangeBeacon(counters, like=path)
    slot = ChangeBeacon.slot_of("alice")
    before = beacon.value(slot)
    script = textwrap.dedent(
        f"""
        import pathlib, sys
        from popbox.store.readahead import ChangeBeacon

        beacon = ChangeBeacon(pathlib.Path({str(counters)!r}), like=pathlib.Path({str(path)!r}))
        print("ready", flush=True)
        sys.stdin.readline()  # everyone starts at once
        for _ in range({BUMPS}):
            beacon.bump("alice")
        """
    )
    with contextlib.ExitStack() as stack:
        bumpers = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", script],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            for _ in range(BUMPERS)
        ]
        for bumper in bumpers:
            stack.callback(_reap, bumper)
        for bumper in bumpers:
            assert bumper.stdout is not None
            assert bumper.stdout.readline() == "ready\n"
        for bumper in bumpers:
            assert bumper.stdin is not None
            bumper.stdin.write("go\n")
            bumper.stdin.flush()
        for bumper in bumpers:
            assert bumper.wait(timeout=120) == 0
    assert beacon.value(slot) - before == BUMPERS * BUMPS


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


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
