"""The SQLite store on a full disk and on a read-only filesystem (issue 15 item 1).

The counters file beside the database (``store/readahead.py``) is memory-mapped; a page
without a block faults with SIGBUS when the disk is full (on tmpfs even a read does).
So its blocks are allocated before it is mapped, and when they cannot be the store
reads without read-ahead until they can.  A full disk's write errors are temporary
(``SQLITE_FULL`` -> ``StoreTemporaryError``, RFC 3206 s4 [SYS/TEMP]); a read-only
filesystem serves the store read-only.  A real tmpfs is mounted for each test
(``tests/tmpfs.py``).
"""

from __future__ import annotations

import gc
import signal
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

import tmpfs
from popbox.store.base import StoreTemporaryError
from popbox.store.message import prepare
from popbox.store.readahead import SLOTS, beacon_path
from popbox.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEXTS = [b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(4)]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tmpfs.Tmpfs]:
    with tmpfs.mounted(tmp_path / "disk", "4m") as mounted:
        yield mounted


async def provisioned(path: Path) -> list[int]:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.add_user("alice", {})
        return [(await store.deliver("alice", prepare(text))).uid for text in TEXTS]
    finally:
        await store.close()
        # The -changes map outlives a closed store until its last reference goes (by
        # design: store/readahead.py), and a cycle may hold one until the collector runs;
        # a writable map keeps the filesystem from being remounted read-only.
        gc.collect()


async def test_counters_file_is_allocated_before_it_is_mapped(
    disk: tmpfs.Tmpfs,
) -> None:
    """Allocated blocks, not a sparse file: nothing left to fault on a full disk."""
    path = disk.path / "mail.sqlite3"
    await provisioned(path)
    counters = beacon_path(path)
    assert counters.stat().st_size == SLOTS * 8
    assert counters.stat().st_blocks * 512 >= SLOTS * 8


async def test_full_disk_reads_without_read_ahead_and_resumes_when_space_returns(
    disk: tmpfs.Tmpfs,
) -> None:
    path = disk.path / "mail.sqlite3"
    uids = await provisioned(path)
    beacon_path(path).unlink()  # as if it never had blocks: none to be had now
    # Another process holds the database open (a worker, a running server): its -shm
    # index exists, without which SQLite itself could not open on a full disk.
    holder = sqlite3.connect(path)
    holder.execute("SELECT count(*) FROM users").fetchall()
    disk.fill()
    store = SqliteStore(path)
    await store.open()  # not refused: serving without read-ahead
    try:
        drop = await store.open_maildrop("alice")
        # A download (consecutive RETRs) is answered by reading each body: the counters
        # that could vouch for a copy read ahead have no blocks.
        assert [drop.body_now(uid) for uid in uids[:2]] == [prepare(t).wire for t in TEXTS[:2]]
        assert beacon_path(path).stat().st_blocks == 0
        with pytest.raises(StoreTemporaryError, match="SQLITE_FULL"):
            await store.deliver("alice", prepare(b"Subject: no room\r\n\r\n" + b"y" * 100_000))
        with pytest.raises(StoreTemporaryError):
            await drop.commit(uids[:1], [], 0.0)
        disk.free()
        drop = await store.open_maildrop("alice")
        assert drop.body_now(uids[0]) == prepare(TEXTS[0]).wire  # reads ahead again
        assert beacon_path(path).stat().st_blocks * 512 >= SLOTS * 8
        assert await store.delete("alice", uids[1:2]) == 1
        assert drop.body_now(uids[1]) is None  # removed after the copy was read (C0004)
        assert drop.body_now(uids[2]) == prepare(TEXTS[2]).wire
    finally:
        await store.close()
        holder.close()


async def test_read_only_filesystem_serves_the_store_read_only(disk: tmpfs.Tmpfs) -> None:
    path = disk.path / "mail.sqlite3"
    uids = await provisioned(path)
    disk.remount("ro")
    try:
        store = SqliteStore(path)
        await store.open()
        try:
            assert [info.uid for info in await store.snapshot("alice")] == uids
            assert await store.fetch("alice", uids[3]) == prepare(TEXTS[3]).wire
            drop = await store.open_maildrop("alice")
            bodies = [drop.body_now(uid) for uid in uids]  # a download, without read-ahead
            assert bodies == [prepare(text).wire for text in TEXTS]
            with pytest.raises(StoreTemporaryError, match="read-only filesystem"):
                await store.deliver("alice", prepare(TEXTS[0]))
            with pytest.raises(StoreTemporaryError, match="read-only filesystem"):
                await drop.commit(uids, [], 0.0)
        finally:
            await store.close()
    finally:
        disk.remount("rw")


async def test_read_only_after_a_crash_still_sees_commits_in_the_log(
    disk: tmpfs.Tmpfs,
) -> None:
    """A delivery acknowledged just before a crash lives in the -wal file: a read-only
    open must read it (not the database file alone), or acknowledged mail vanishes."""
    path = disk.path / "mail.sqlite3"
    await provisioned(path)
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from pathlib import Path
        from popbox.store.message import prepare
        from popbox.store.sqlite import SqliteStore

        async def main():
            store = SqliteStore(Path({str(path)!r}))
            await store.open()
            await store.deliver("alice", prepare(b"Subject: last\\r\\n\\r\\nacked\\r\\n"))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert path.with_name(path.name + "-wal").stat().st_size > 0
    disk.remount("ro")
    try:
        store = SqliteStore(path)
        await store.open()
        try:
            infos = await store.snapshot("alice")
            assert len(infos) == len(TEXTS) + 1
            assert b"acked" in (await store.fetch("alice", infos[-1].uid) or b"")
        finally:
            await store.close()
    finally:
        disk.remount("rw")
