"""One session's maildrop on the SQLite store: the snapshot, body reads, UPDATE's commit.

Theory of operation: a client downloading its maildrop sends RETR 1, RETR 2, ... and
for small messages each RETR would be one SQLite read transaction (a WAL read lock, its
release, one statement): the largest single share of the command cycle.  So when a
session asks for the message after the one it last asked for (or for the first), the
handle reads that body and the next few small ones of its snapshot in one statement
(at most ``AHEAD_COUNT`` messages and ``AHEAD_OCTETS`` octets), and answers the
following requests from them while the ``ChangeBeacon`` vouches that no message has
left the mailbox since (C0004, ``store/readahead.py``).  Anything else is one point
read: on the event loop's thread for a body of at most ``INLINE_FETCH`` octets (it costs
microseconds), on the store's read pool for a larger one, so a 25 MB RETR never stalls
the other sessions of the worker.

``commit`` is UPDATE as one write transaction (``sqlite_ops.commit_update``), with the
beacon bumped around it when it removes messages.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from operator import attrgetter
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

from popbox.store import sqlite_ops as ops
from popbox.store.base import Pending
from popbox.store.readahead import ChangeBeacon, ReadAhead

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

    from popbox.store.base import MessageInfo

__all__ = ["AHEAD_COUNT", "AHEAD_OCTETS", "INLINE_FETCH", "SqliteAccess", "SqliteMaildrop"]

# One read serves up to this many RETRs; beyond 16 the saving per RETR is small, while
# the memory a downloading session holds keeps growing.
AHEAD_COUNT = 16
AHEAD_OCTETS = 64 * 1024
INLINE_FETCH = 256 * 1024  # octets of wire form read on the event loop's thread
LARGE_CHUNK = 1024 * 1024  # octets a larger body is read by, the interpreter lock let go

_UID = attrgetter("uid")
_P = ParamSpec("_P")
_T = TypeVar("_T")


class SqliteAccess(Protocol):
    """What a handle needs of ``SqliteStore`` (its ways into the database), named here so
    that this module need not import the store that imports it."""

    def read_inline(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T: ...

    async def read_pooled(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T: ...

    async def write_removing(
        self,
        name: str,
        operation: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T: ...


class SqliteMaildrop:
    """A ``MaildropHandle`` on ``store`` for ``name``, over the snapshot ``messages``."""

    __slots__ = ("_ahead", "_beacon", "_name", "_next", "_store", "messages")

    def __init__(
        self,
        store: SqliteAccess,
        beacon: ChangeBeacon,
        name: str,
        messages: Sequence[MessageInfo],
    ) -> None:
        self._store = store
        self._beacon = beacon
        self._name = name
        self.messages = messages
        self._next = 0  # the index in ``messages`` a download would ask for next
        self._ahead: ReadAhead | None = None

    def body_now(self, uid: int) -> bytes | Pending | None:
        index = self._next
        messages = self.messages
        consecutive = index < len(messages) and messages[index].uid == uid
        if not consecutive:
            index = bisect_left(messages, uid, key=_UID)
        self._next = index + 1
        if self._ahead is not None:
            wire = self._ahead.take(uid)
            if wire is not None:
                return wire
        # Without the counters (a full disk or a read-only filesystem: see
        # store/readahead.py) no copy could be vouched for: each body is read then.
        if consecutive and self._beacon.available():
            run = self._run_from(index)
            if len(run) > 1:
                self._ahead = self._read_ahead(run)
                wire = self._ahead.take(uid)
                if wire is not None:
                    return wire
        # Not read ahead, too large, removed meanwhile (None), or stale: read it now.
        return self._read_small(uid)

    async def body(self, uid: int) -> bytes | None:
        wire = self._read_small(uid)
        if wire is Pending.FETCH:
            return await self._store.read_pooled(_fetch_large, self._name, uid)
        return wire

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        if not deleted and not retrieved:
            return 0  # a QUIT that changes nothing costs no write transaction
        gone, marked = sorted(set(deleted)), sorted(set(retrieved))
        # Bumped even when nothing is removed: one code path, and a needless bump only
        # makes other sessions read a body again.
        return await self._store.write_removing(
            self._name, ops.commit_update, self._name, gone, marked, at
        )

    async def close(self) -> None:
        self._ahead = None

    def _run_from(self, index: int) -> list[int]:
        """Uids from ``index`` on, at most ``AHEAD_COUNT`` of them and ``AHEAD_OCTETS``."""
        uids: list[int] = []
        total = 0
        for info in self.messages[index : index + AHEAD_COUNT]:
            total += info.stored_size
            if total > AHEAD_OCTETS:
                break
            uids.append(info.uid)
        return uids

    def _read_ahead(self, uids: list[int]) -> ReadAhead:
        slot = ChangeBeacon.slot_of(self._name)
        seen = self._beacon.value(slot)  # before the read: see store/readahead.py
        bodies = self._store.read_inline(_fetch_run, self._name, uids)
        return ReadAhead(self._beacon, slot, seen, bodies)

    def _read_small(self, uid: int) -> bytes | Pending | None:
        wire = self._store.read_inline(_fetch_small, self._name, uid, INLINE_FETCH)
        return Pending.FETCH if isinstance(wire, _TooLarge) else wire


def _fetch_run(conn: sqlite3.Connection, name: str, uids: list[int]) -> dict[int, bytes]:
    """The bodies of ``uids`` that are still there, by uid, in one statement."""
    rows = conn.execute(
        "SELECT m.uid, m.wire FROM messages AS m JOIN users AS u ON u.id = m.user_id"
        " WHERE u.name = ? AND m.uid IN (SELECT value FROM json_each(?))",
        (name, json.dumps(uids)),
    ).fetchall()
    return dict(rows)


def _fetch_small(
    conn: sqlite3.Connection, name: str, uid: int, limit: int
) -> bytes | _TooLarge | None:
    """``sqlite_ops.fetch``, but only a body of at most ``limit`` octets is read.

    ``length()`` of a BLOB comes from the record header, so a large body is not loaded
    just to learn that it is large.
    """
    row = conn.execute(
        "SELECT CASE WHEN length(m.wire) <= ? THEN m.wire END, length(m.wire)"
        " FROM messages AS m JOIN users AS u ON u.id = m.user_id"
        " WHERE u.name = ? AND m.uid = ?",
        (limit, name, uid),
    ).fetchone()
    if row is None:
        return None
    return _TooLarge() if row[0] is None else bytes(row[0])


def _fetch_large(conn: sqlite3.Connection, name: str, uid: int) -> bytes | None:
    """A large body, read in ``LARGE_CHUNK`` pieces through the incremental blob API.

    One ``SELECT`` of the whole value would assemble it from its overflow pages while
    holding the interpreter lock, stalling every session of the worker for as long (a
    few hundred ms for 50 MiB); ``Blob.read`` lets it go during each piece.  The
    statement and the reads run in one read transaction, so the row cannot change
    between them.
    """
    conn.execute("BEGIN")
    try:
        row = conn.execute(
            "SELECT m.rowid FROM messages AS m JOIN users AS u ON u.id = m.user_id"
            " WHERE u.name = ? AND m.uid = ?",
            (name, uid),
        ).fetchone()
        if row is None:
            return None
        pieces = []
        with conn.blobopen("messages", "wire", row[0], readonly=True) as blob:
            while piece := blob.read(LARGE_CHUNK):
                pieces.append(piece)
        return b"".join(pieces)
    finally:
        conn.execute("COMMIT")


class _TooLarge:
    """``_fetch_small`` found the message, larger than the limit: read it elsewhere."""

    __slots__ = ()
