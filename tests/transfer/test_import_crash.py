"""kill -9 in the middle of ``popbox import``: committed batches stay whole, nothing half
written is visible, and running the same command again completes it without duplicates.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from typing import TYPE_CHECKING

from popbox.store import SQLITE_FILE_NAME, open_store
from popbox.store.message import unstuff
from popbox_cli import popbox_command

if TYPE_CHECKING:
    from pathlib import Path

COUNT = 12_000
BATCH = 100


def body(n: int) -> bytes:
    return b"Subject: import %d\r\nX-UIDL: old-%d\r\n\r\n" % (n, n) + b"text\r\n" * 20


def write_mbox(path: Path) -> None:
    with path.open("wb") as handle:
        for n in range(COUNT):
            handle.write(b"From a@example.org Sat Jan  3 01:05:34 2026\n")
            handle.write(body(n).replace(b"\r\n", b"\n") + b"\n")


def stored(data_dir: Path) -> list[tuple[str, bytes]]:
    async def read() -> list[tuple[str, bytes]]:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            return [
                (info.uidl, unstuff(await store.fetch("alice", info.uid) or b""))
                for info in await store.snapshot("alice")
            ]
        finally:
            await store.close()

    return asyncio.run(read())


def count(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        found = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    db.close()
    return found


def test_kill_9_during_import_then_resume(tmp_path: Path) -> None:
    config = tmp_path / "popbox.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    mbox = tmp_path / "big.mbox"
    write_mbox(mbox)
    subprocess.run(
        [popbox_command(), "user", "add", "alice", "--password-stdin", "--config", str(config)],
        input=b"secret\n",
        check=True,
        timeout=30,
        capture_output=True,
    )
    command = [popbox_command(), "import", "mbox", "alice", str(mbox), "--keep-uidl"]
    command += ["--batch", str(BATCH), "--config", str(config)]
    importer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = tmp_path / "data" / SQLITE_FILE_NAME
    deadline = time.monotonic() + 60
    while not (database.exists() and count(database) >= 10 * BATCH):
        assert importer.poll() is None, "the import finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    importer.send_signal(signal.SIGKILL)
    importer.wait(30)

    partial = stored(tmp_path / "data")
    assert 0 < len(partial) < COUNT
    assert len(partial) % BATCH == 0  # whole transactions only
    assert partial == [(f"old-{n}", body(n)) for n in range(len(partial))]

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"imported {COUNT - len(partial)} of {COUNT} messages" in resumed.stdout
    assert f"already imported before, skipped: {len(partial)}" in resumed.stdout
    complete = stored(tmp_path / "data")
    assert complete == [(f"old-{n}", body(n)) for n in range(COUNT)]
