"""The embedded default ``MailStore``: one SQLite file in WAL mode.

Theory of operation: ``sqlite3`` blocks, so long calls never run on the event loop.  All
writes go through one connection on a single-thread executor: SQLite allows one writer
at a time anyway, and serialising them in-process turns lock contention into a queue.
Each write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so
a transaction never fails half-way while upgrading a read lock) committed with
``synchronous = FULL``, so a delivery is on disk before it is acknowledged.  Large reads
(a snapshot of more than ``INLINE_SNAPSHOT`` messages, listings) use a small pool of
read-only connections on their own threads: in WAL mode they see the last commit and
neither wait for nor block the writer.  The short reads of the login and RETR paths
(``get_user``, ``fetch``, a small ``snapshot``) cost microseconds, while a hand-off to a
pool thread and back costs about nine context switches (measured with bench/), so they
run on the caller's thread, on a read-only connection of their own.  A session's
``SqliteMaildrop`` (``store/sqlite_maildrop.py``) reads the next few small bodies of a
download in one statement; every write that removes messages bumps the mailbox's
counter in the ``ChangeBeacon`` that tells such copies they may be stale
(``store/readahead.py``).

Other popbox processes on the same file (several workers, the CLI) are serialised by
SQLite's own lock; a wait longer than ``busy_timeout`` becomes ``StoreTemporaryError``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from popbox.store import sqlite_ops as ops
from popbox.store import sqlite_users as users
from popbox.store.base import (
    MessageInfo,
    StoreError,
    StorePermanentError,
    StoreTemporaryError,
    UserRecord,
)
from popbox.store.readahead import ChangeBeacon, beacon_path
from popbox.store.sqlite_admin import SqliteAdminRecords
from popbox.store.sqlite_maildrop import SqliteMaildrop
from popbox.store.sqlite_open import (
    connect,
    connect_read_only,
    on_read_only_filesystem,
    require_current_schema,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from popbox.store.base import NewMessage
    from popbox.store.store_copy import MailboxState

__all__ = ["SqliteStore"]

# Maildrops up to this many messages are read on the loop's thread (see above).
INLINE_SNAPSHOT = 500
_P = ParamSpec("_P")
_T = TypeVar("_T")

# Primary result codes (the low byte of an extended code) that describe a passing
# condition: contention, a full or failing disk, memory pressure.  Retrying later may
# work, so the client hears [SYS/TEMP] and an MTA keeps the message queued.
_TEMPORARY_CODES = frozenset(
    {
        5,  # SQLITE_BUSY
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: a filesystem remounted read-only, until an admin acts
        10,  # SQLITE_IOERR
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        17,  # SQLITE_SCHEMA
    }
)


def _translate(exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", "unknown error")
    if isinstance(code, int) and code & 0xFF in _TEMPORARY_CODES:
        return StoreTemporaryError(f"the mail database is unavailable ({name})")
    return StorePermanentError(f"the mail database needs an administrator ({name})")


class SqliteStore:
    """A ``MailStore`` in the SQLite file at ``path`` (created, with its directory, on open).

    ``clock`` returns POSIX seconds (lock leases, default ``received_at``);
    ``busy_timeout`` is how long to wait for another process's write lock before
    raising ``StoreTemporaryError``; ``readers`` is the size of the read pool.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
        readers: int = 4,
    ) -> None:
        if readers < 1:
            raise ValueError("the read pool needs at least one connection")
        self._path = path
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._readers = readers
        self._state = "new"
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="popbox-sqlite-write")
        self._reader_pool = ThreadPoolExecutor(readers, thread_name_prefix="popbox-sqlite-read")
        self._connections: list[sqlite3.Connection] = []
        self._inline_conn: sqlite3.Connection | None = None
        self._beacon: ChangeBeacon | None = None
        self._read_only = False  # on a read-only filesystem: see store/sqlite_open.py
        # The inline connection is normally used by one event loop's thread; the lock
        # only matters if a store is shared between loops on several threads.
        self._inline_lock = threading.Lock()
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self.admin = SqliteAdminRecords(self)

    async def open(self) -> None:
        """Create or open the file, apply pending migrations, and start the read pool."""
        if self._state != "new":
            raise RuntimeError("the store was already opened")
        self._state = "opening"
        try:
            await self._run(self._writer_pool, self._open_sync)
        except BaseException:
            await self.close()
            raise
        self._state = "open"

    async def close(self) -> None:
        """Wait for running calls, then close every connection."""
        if self._state == "closed":
            return
        self._state = "closed"
        await asyncio.to_thread(self._shutdown)

    # -- users ---------------------------------------------------------------

    async def add_user(
        self, name: str, verifiers: Mapping[str, str], quota: int | None = None
    ) -> None:
        await self.write(users.add_user, name, json.dumps(dict(verifiers)), quota, self._clock())

    async def set_verifiers(self, name: str, verifiers: Mapping[str, str]) -> None:
        sql = "UPDATE users SET verifiers = ? WHERE name = ?"
        cursor = await self.write(
            sqlite3.Connection.execute, sql, (json.dumps(dict(verifiers)), name)
        )
        users.require_change(cursor, name)

    async def set_quota(self, name: str, quota: int | None) -> None:
        sql = "UPDATE users SET quota = ? WHERE name = ?"
        users.require_change(await self.write(sqlite3.Connection.execute, sql, (quota, name)), name)

    async def set_disabled(self, name: str, reason: str | None) -> None:
        sql = "UPDATE users SET disabled = ? WHERE name = ?"
        users.require_change(
            await self.write(sqlite3.Connection.execute, sql, (reason, name)), name
        )

    async def delete_user(self, name: str) -> None:
        # One statement, so atomic; ON DELETE CASCADE removes the messages and the lock.
        # A user added again under the name counts uids from 1: copies must go stale.
        sql = "DELETE FROM users WHERE name = ?"
        cursor = await self.write_removing(name, sqlite3.Connection.execute, sql, (name,))
        users.require_change(cursor, name)

    async def get_user(self, name: str) -> UserRecord | None:
        sql = "SELECT name, verifiers, quota, disabled FROM users WHERE name = ?"
        rows = self.read_inline(users.user_rows, sql, (name,))
        return users.user_record(rows[0]) if rows else None

    async def find_user(self, name: str) -> UserRecord | None:
        return await self.get_user(name)  # no copy: the read is local and on the loop

    async def list_users(self) -> Sequence[UserRecord]:
        # BINARY collation orders by code point, as Python's sorted() does for str.
        sql = "SELECT name, verifiers, quota, disabled FROM users ORDER BY name"
        return [users.user_record(row) for row in await self.read_pooled(users.user_rows, sql, ())]

    # -- maildrop ------------------------------------------------------------

    async def open_maildrop(self, name: str) -> SqliteMaildrop:
        messages = await self.snapshot(name)  # raises if the store is not open
        assert self._beacon is not None
        return SqliteMaildrop(self, self._beacon, name, messages)

    async def snapshot(self, name: str) -> Sequence[MessageInfo]:
        # Most maildrops are small: read inline, as a point read is.  A large one goes
        # to the read pool, so the loop never stalls on tens of thousands of rows.
        messages = self.read_inline(ops.snapshot, name, INLINE_SNAPSHOT + 1)
        if len(messages) <= INLINE_SNAPSHOT:
            return messages
        return await self.read_pooled(ops.snapshot, name)

    async def usage(self, name: str) -> int:
        return await self.read_pooled(ops.usage, name)

    async def fetch(self, name: str, uid: int) -> bytes | None:
        return await self.read_pooled(ops.fetch, name, uid)

    async def deliver(
        self,
        name: str,
        message: NewMessage,
        *,
        quota: int | None = None,
        dedup_window: float = 0.0,
    ) -> MessageInfo:
        # If the caller is cancelled while the commit runs, the message may still be
        # stored without an acknowledgement; the MTA then retries (at-least-once).
        return await self.write(ops.deliver, name, message, quota, dedup_window, self._clock)

    async def delete(self, name: str, uids: Iterable[int]) -> int:
        return await self.write_removing(name, ops.commit_update, name, sorted(set(uids)), [], 0.0)

    async def mark_retrieved(self, name: str, uids: Iterable[int], at: float) -> None:
        await self.write(ops.commit_update, name, [], sorted(set(uids)), at)

    async def import_messages(
        self, name: str, messages: Sequence[NewMessage], *, uids_above: int = 0
    ) -> Sequence[MessageInfo]:
        return await self.write(ops.import_messages, name, messages, uids_above, self._clock)

    async def set_quota_warned(self, name: str, *, warned: bool) -> bool:
        return await self.write(ops.set_quota_warned, name, warned)

    async def expire(
        self, name: str, *, retrieved_before: float | None, unretrieved_before: float | None
    ) -> int:
        return await self.write_removing(
            name, ops.expire, name, retrieved_before, unretrieved_before
        )

    # -- exclusive lock ------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> None:
        await self.write(ops.acquire_lock, name, owner, lease_seconds, self._clock)

    async def release_lock(self, name: str, owner: str) -> None:
        sql = (
            "DELETE FROM locks WHERE owner = ? AND user_id = (SELECT id FROM users WHERE name = ?)"
        )
        await self.write(sqlite3.Connection.execute, sql, (owner, name))

    # -- store-to-store copy (popbox.store.store_copy) --------------------------

    async def export_state(self, name: str) -> MailboxState:
        """``name``'s counter, retrieval times, quota-warning flag and import keys."""
        return await self.read_pooled(ops.export_state, name)

    # -- threads and connections ---------------------------------------------

    def _open_sync(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorePermanentError("cannot create the mail database directory") from exc
        self._read_only = on_read_only_filesystem(self._path)
        if self._read_only:
            reader = partial(connect_read_only, self._path, busy_timeout=self._busy_timeout)
            self._connections.append(reader())
            require_current_schema(self._connections[0])
        else:
            reader = partial(connect, self._path, busy_timeout=self._busy_timeout, writer=False)
            writer = connect(self._path, busy_timeout=self._busy_timeout, writer=True)
            self._connections.append(writer)
            ops.apply_migrations(writer, self._clock)
        for _ in range(self._readers):
            self._connections.append(pooled := reader())
            self._idle_readers.put(pooled)
        self._inline_conn = reader()
        self._connections.append(self._inline_conn)
        try:
            self._beacon = ChangeBeacon(beacon_path(self._path), like=self._path)
        except OSError as exc:
            path = beacon_path(self._path)
            raise StorePermanentError(f"cannot open {path.name} beside the database") from exc

    def _shutdown(self) -> None:
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        if self._beacon is not None:
            self._beacon.close()

    def _with_reader(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        # Never blocks: the pool has as many connections as threads.
        conn = self._idle_readers.get()
        try:
            return operation(conn, *args, **kwargs)
        finally:
            self._idle_readers.put(conn)

    async def write(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run ``operation`` on the writer connection's thread (``SqliteAdminRecords`` too)."""
        writer = self._writer()
        return await self._run(self._writer_pool, partial(operation, writer, *args, **kwargs))

    async def write_removing(
        self,
        name: str,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """A write that may remove ``name``'s messages: its counter is bumped around it.

        This and the two reads below are also ``SqliteMaildrop``'s way in.
        """
        writer = self._writer()
        beacon = self._beacon
        assert beacon is not None
        job = partial(_bumped, beacon, name, partial(operation, writer, *args, **kwargs))
        return await self._run(self._writer_pool, job)

    async def read_pooled(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        self._check_open()
        job = partial(self._with_reader, operation, *args, **kwargs)
        return await self._run(self._reader_pool, job)

    def read_inline(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        self._check_open()
        assert self._inline_conn is not None
        try:
            with self._inline_lock:
                return operation(self._inline_conn, *args, **kwargs)
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # misuse of the API is a bug to fix, not a database condition
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def _writer(self) -> sqlite3.Connection:
        self._check_open()
        if self._read_only:
            raise StoreTemporaryError("the mail database is on a read-only filesystem")
        return self._connections[0]

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError("the store is not open")

    @staticmethod
    async def _run(pool: ThreadPoolExecutor, job: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job)
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # misuse of the API is a bug to fix, not a database condition
        except sqlite3.Error as exc:
            raise _translate(exc) from exc


def _bumped(beacon: ChangeBeacon, name: str, job: Callable[[], _T]) -> _T:
    # Before, and after the commit (or the failure): see store/readahead.py.
    beacon.bump(name)
    try:
        return job()
    finally:
        beacon.bump(name)
