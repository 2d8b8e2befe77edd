"""What a node checks and creates once at start (server/startup.py), piece by piece."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from popbox.config import from_mapping
from popbox.server.startup import StartupError, open_store_at_start, prepare
from popbox.store import SQLITE_FILE_NAME

SQLITE_BUSY_TIMEOUT = 5.0  # the SQLite store's own wait for a lock (store/sqlite.py)


def hold_exclusive_lock(path, seconds: float) -> threading.Thread:
    """Another process's write lock on the database file, released after ``seconds``."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return thread


async def test_opening_waits_for_a_database_busy_longer_than_sqlites_own_wait(tmp_path):
    """Issue 15 item 4: "opening waits on a busy database".  A lock held past SQLite's
    busy timeout is waited out instead of failing the start with SQLITE_BUSY."""
    config = from_mapping({"data_dir": str(tmp_path)})
    holder = hold_exclusive_lock(tmp_path / SQLITE_FILE_NAME, SQLITE_BUSY_TIMEOUT + 1.5)
    started = time.monotonic()
    try:
        store = await open_store_at_start(config, patience=30)
    finally:
        await asyncio.to_thread(holder.join, 30)
    try:
        assert time.monotonic() - started > SQLITE_BUSY_TIMEOUT  # it did have to wait
        assert await store.list_users() == []  # created and migrated once the lock went
    finally:
        await store.close()


async def test_without_patience_a_busy_database_is_one_line_naming_it(tmp_path):
    config = from_mapping({"data_dir": str(tmp_path)})
    path = tmp_path / SQLITE_FILE_NAME
    holder = hold_exclusive_lock(path, SQLITE_BUSY_TIMEOUT + 1.5)
    try:
        with pytest.raises(StartupError) as raised:
            await open_store_at_start(config)
    finally:
        await asyncio.to_thread(holder.join, 30)
    assert str(raised.value) == f"storage: {path}: the mail database is unavailable (SQLITE_BUSY)"


async def test_prepare_creates_the_certificate_the_secret_and_the_store(tmp_path):
    """What a first start creates, made by the one process that runs prepare."""
    data_dir = tmp_path / "fresh"
    config = from_mapping({"data_dir": str(data_dir), "auth": {"mechanisms": ["SCRAM-SHA-256"]}})

    store = await prepare(config)
    try:
        assert await store.list_users() == []
    finally:
        await store.close()

    assert (data_dir / "tls" / "cert.pem").is_file()
    assert (data_dir / "tls" / "key.pem").is_file()
    assert (data_dir / "auth-secret").stat().st_size >= 16
    assert (data_dir / SQLITE_FILE_NAME).is_file()


async def test_prepare_names_an_auth_secret_that_is_too_short(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"short")
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "auth": {"mechanisms": ["SCRAM-SHA-256"], "secret_file": str(secret)},
        }
    )

    with pytest.raises(StartupError) as raised:
        await prepare(config)

    assert str(raised.value) == f"auth: {secret}: the auth secret must hold at least 16 bytes"
