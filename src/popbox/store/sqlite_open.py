"""Opening connections to the SQLite file: read-write, or read-only on a read-only filesystem.

Theory of operation: a WAL database is read through its ``-shm`` index, which SQLite
creates beside the file.  On a filesystem mounted read-only it cannot, so a normal open
fails (``SQLITE_CANTOPEN``) although every message is there to be read.  popbox then
serves the store read-only (DESIGN: a read-only filesystem must not stop it serving
existing mail): with ``mode=ro`` when the ``-wal`` and ``-shm`` files exist (a crash
left them, and the commits in the log are part of the database), otherwise with
``immutable=1`` (a clean shutdown checkpointed everything into the file and removed
both).  ``immutable`` tells SQLite that nobody changes the file, which holds while the
filesystem is read-only; once it is writable again popbox must be restarted (README,
"Durability and failure behaviour").
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from typing import TYPE_CHECKING

from popbox.store import migrate
from popbox.store.base import StorePermanentError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "READ_MMAP",
    "connect",
    "connect_read_only",
    "on_read_only_filesystem",
    "require_current_schema",
]

# Readers map the database file instead of copying each page in with pread(): a RETR of
# a small message then costs no read syscall.  (Pages still in the WAL are read as usual.)
# The map is read-only and SQLite never reads a page of the file that was not written
# (a checkpoint that failed for want of space leaves those pages in the WAL, which is
# read with pread), so a full disk cannot make touching it fault.
READ_MMAP = 1 << 30


def on_read_only_filesystem(path: Path) -> bool:
    """True when the directory of the database ``path`` is on a read-only mount."""
    return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)


def connect(path: Path, *, busy_timeout: float, writer: bool) -> sqlite3.Connection:
    """A connection to ``path``: the writer (WAL, synchronous) or a query-only reader."""
    # isolation_level=None: transactions are explicit BEGIN IMMEDIATE ... COMMIT, not
    # the module's implicit ones.  check_same_thread=False only lets close() run on
    # another thread; each connection is used by one thread at a time.
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        _configure(conn, writer=writer)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """A reader of ``path`` on a read-only filesystem (see the module's docstring)."""
    crashed = path.with_name(path.name + "-wal").exists()
    query = "mode=ro" if crashed else "mode=ro&immutable=1"
    uri = f"file:{urllib.parse.quote(str(path))}?{query}"
    conn = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        _configure(conn, writer=False)
    except BaseException:
        conn.close()
        raise
    return conn


def require_current_schema(conn: sqlite3.Connection) -> None:
    """Refuse a database whose schema needs migrating: a read-only one cannot be."""
    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:  # no such table: never initialised
        raise StorePermanentError(
            "the mail database is on a read-only filesystem and was never initialised"
        ) from exc
    if migrate.pending(migrate.load("sqlite"), int(row[0] or 0)):
        raise StorePermanentError(
            "the mail database needs a schema upgrade, which its read-only filesystem prevents"
        )


def _configure(conn: sqlite3.Connection, *, writer: bool) -> None:
    conn.execute("PRAGMA foreign_keys = ON")
    if not writer:
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA mmap_size = {READ_MMAP}")
        return
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StorePermanentError(f"the mail database cannot use WAL (got {mode})")
    # FULL syncs the WAL at every commit: a delivery is durable before it is acknowledged.
    conn.execute("PRAGMA synchronous = FULL")
