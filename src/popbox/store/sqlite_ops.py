"""The blocking SQL operations behind ``SqliteStore``, one function per transaction.

Each function takes the connection it runs on.  Writers and long reads run on one of the
store's threads; a small ``snapshot`` also runs on the event loop's thread, on a
connection of its own (``SqliteStore`` says why, and ``sqlite_maildrop`` holds the body
reads that do the same).  Writers wrap their statements in ``_transaction``
(``BEGIN IMMEDIATE`` ... ``COMMIT``), so each store call is all-or-nothing.  Readers run
one statement each: in WAL mode a single statement is a consistent read
(``export_state`` needs three, so it holds one read transaction around them).  The
``users`` table's own operations, one statement each, are ``sqlite_users``'.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from popbox.store import migrate
from popbox.store.base import (
    DeliveryRefused,
    MaildropLocked,
    MessageInfo,
    RefusalReason,
    UnknownUser,
    assign_uids,
)
from popbox.store.spooled import PIECE, wire_pieces
from popbox.store.store_copy import MailboxState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from popbox.store.base import NewMessage

__all__ = [
    "acquire_lock",
    "apply_migrations",
    "commit_update",
    "deliver",
    "expire",
    "export_state",
    "fetch",
    "import_messages",
    "set_quota_warned",
    "snapshot",
    "usage",
]

_INSERT = (
    "INSERT INTO messages (user_id, uid, size, stored_size, received_at, retrieved_at,"
    " legacy_uidl, wire) VALUES (?, ?, ?, ?, ?, ?, ?, {wire})"
)

_SNAPSHOT = (
    "SELECT m.uid, m.size, m.stored_size, m.received_at, m.legacy_uidl"
    " FROM users AS u LEFT JOIN messages AS m ON m.user_id = u.id"
    " WHERE u.name = ? ORDER BY m.uid LIMIT ?"
)
_USAGE = (
    "SELECT coalesce(sum(m.size), 0) FROM users AS u"
    " LEFT JOIN messages AS m ON m.user_id = u.id WHERE u.name = ? GROUP BY u.id"
)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # After an I/O error the rollback may fail too; the first error is the news.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    # sqlite3 executes one statement per call, and executescript() would commit our
    # transaction; complete_statement() knows about quotes, comments and triggers.
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""


def _schema_version(conn: sqlite3.Connection) -> int:
    version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return int(version or 0)


def apply_migrations(conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
    conn.execute(migrate.SCHEMA_VERSION_DDL)
    for step in migrate.pending(migrate.load("sqlite"), _schema_version(conn)):
        with _transaction(conn):
            # Another process may have applied it while this one waited for the lock.
            if _schema_version(conn) >= step.version:
                continue
            for statement in _statements(step.sql):
                conn.execute(statement)
            applied_at = datetime.fromtimestamp(clock(), UTC).isoformat()
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (step.version, applied_at),
            )


def _user_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UnknownUser(f"no such user {name!r}")
    return int(row[0])


def deliver(  # noqa: PLR0913, PLR0917 - the parts of one delivery
    conn: sqlite3.Connection,
    name: str,
    message: NewMessage,
    quota: int | None,
    window: float,
    clock: Callable[[], float],
) -> MessageInfo:
    with _transaction(conn):
        row = conn.execute("SELECT id, next_uid FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        user_id, uid = row
        key = message.delivery_key
        now = 0.0 if key is None else clock()
        if key is not None:
            earlier = _earlier_delivery(conn, user_id, key, now - window, message)
            if earlier is not None:
                return earlier
        if quota is not None:
            used = conn.execute(
                "SELECT coalesce(sum(size), 0) FROM messages WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            if used + message.size > quota:
                raise DeliveryRefused(
                    RefusalReason.OVER_QUOTA,
                    f"mailbox {name!r} is over quota: {used} + {message.size} > {quota} octets",
                )
        # Inside the same write transaction as the insert, so two deliveries can never
        # read the same counter value, and a refused one leaves it untouched.
        conn.execute("UPDATE users SET next_uid = next_uid + 1 WHERE id = ?", (user_id,))
        [info] = _insert(conn, user_id, uid, [message], clock)
        if key is not None:
            conn.execute(
                "INSERT OR REPLACE INTO delivery_keys (user_id, key, uid, delivered_at)"
                " VALUES (?, ?, ?, ?)",
                (user_id, key, uid, now),
            )
    return info


def _earlier_delivery(
    conn: sqlite3.Connection, user_id: int, key: str, since: float, message: NewMessage
) -> MessageInfo | None:
    """The delivery of ``key`` recorded at or after ``since``; older keys are purged."""
    conn.execute(
        "DELETE FROM delivery_keys WHERE user_id = ? AND delivered_at < ?", (user_id, since)
    )
    row = conn.execute(
        "SELECT uid, delivered_at FROM delivery_keys WHERE user_id = ? AND key = ?",
        (user_id, key),
    ).fetchone()
    if row is None:
        return None
    stored = conn.execute(
        "SELECT uid, size, stored_size, received_at, legacy_uidl FROM messages"
        " WHERE user_id = ? AND uid = ?",
        (user_id, row[0]),
    ).fetchone()
    if stored is not None:
        return MessageInfo._make(stored)
    # Delivered, then retrieved and deleted before the retry came: still delivered.
    return MessageInfo(row[0], message.size, len(message.wire), row[1], message.legacy_uidl)


def import_messages(
    conn: sqlite3.Connection,
    name: str,
    messages: Sequence[NewMessage],
    uids_above: int,
    clock: Callable[[], float],
) -> list[MessageInfo]:
    with _transaction(conn):
        row = conn.execute("SELECT id, next_uid FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        user_id, next_uid = row
        fresh = []
        for message in messages:
            if message.import_key is not None:
                cursor = conn.execute(
                    "INSERT INTO import_keys (user_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (user_id, message.import_key),
                )
                if cursor.rowcount == 0:
                    continue  # committed by an earlier run of the same import
            fresh.append(message)
        first = max(next_uid, uids_above + 1)
        conn.execute("UPDATE users SET next_uid = ? WHERE id = ?", (first + len(fresh), user_id))
        return _insert(conn, user_id, first, fresh, clock)


def _insert(
    conn: sqlite3.Connection,
    user_id: int,
    first_uid: int,
    messages: Sequence[NewMessage],
    clock: Callable[[], float],
) -> list[MessageInfo]:
    infos = assign_uids(messages, first_uid, clock)
    small = []
    for info, message in zip(infos, messages, strict=True):
        uid, size, stored, received, legacy_uidl = info
        row = (user_id, uid, size, stored, received, message.retrieved_at, legacy_uidl)
        wire = message.wire
        if isinstance(wire, bytes) and len(wire) <= PIECE:
            small.append((*row, wire))
            continue
        # A bound blob is copied by SQLite, then again into the row it builds (two more
        # copies of maybe tens of MiB), and a spooled one would have to be read whole
        # first; the incremental blob API takes a piece at a time.
        cursor = conn.execute(_INSERT.format(wire="zeroblob(?)"), (*row, len(wire)))
        with conn.blobopen("messages", "wire", cursor.lastrowid or 0) as blob:
            for piece in wire_pieces(wire):
                blob.write(piece)
    conn.executemany(_INSERT.format(wire="?"), small)
    return infos


def set_quota_warned(conn: sqlite3.Connection, name: str, warned: bool) -> bool:  # noqa: FBT001
    with _transaction(conn):
        row = conn.execute("SELECT id, quota_warned FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        conn.execute("UPDATE users SET quota_warned = ? WHERE id = ?", (int(warned), row[0]))
        return bool(row[1])


def expire(
    conn: sqlite3.Connection,
    name: str,
    retrieved_before: float | None,
    unretrieved_before: float | None,
) -> int:
    with _transaction(conn):
        user_id = _user_id(conn, name)
        # A comparison with NULL is never true, so a None cut-off keeps that kind.
        cursor = conn.execute(
            "DELETE FROM messages WHERE user_id = ? AND ("
            " (retrieved_at IS NOT NULL AND retrieved_at < ?)"
            " OR (retrieved_at IS NULL AND received_at < ?))",
            (user_id, retrieved_before, unretrieved_before),
        )
        return max(cursor.rowcount, 0)


# UPDATE's uids go in as one JSON array per statement: a statement per uid
# (executemany) cost more than the lookups themselves at UPDATE.
def commit_update(
    conn: sqlite3.Connection, name: str, deleted: list[int], retrieved: list[int], at: float
) -> int:
    """Stamp ``retrieved`` (first time only, E0005) and remove ``deleted``: one transaction."""
    with _transaction(conn):
        user_id = _user_id(conn, name)
        if retrieved:
            conn.execute(
                "UPDATE messages SET retrieved_at = ?"
                " WHERE user_id = ? AND uid IN (SELECT value FROM json_each(?))"
                " AND retrieved_at IS NULL",
                (at, user_id, json.dumps(retrieved)),
            )
        if not deleted:
            return 0
        cursor = conn.execute(
            "DELETE FROM messages WHERE user_id = ? AND uid IN (SELECT value FROM json_each(?))",
            (user_id, json.dumps(deleted)),
        )
        return max(cursor.rowcount, 0)  # gone uids change no row


def acquire_lock(
    conn: sqlite3.Connection, name: str, owner: str, lease: float, clock: Callable[[], float]
) -> None:
    with _transaction(conn):
        user_id = _user_id(conn, name)
        now = clock()
        held = conn.execute(
            "SELECT owner, expires FROM locks WHERE user_id = ?", (user_id,)
        ).fetchone()
        if held is not None and held[0] != owner and held[1] > now:
            raise MaildropLocked(f"maildrop {name!r} is locked by another session")
        conn.execute(
            "INSERT INTO locks (user_id, owner, expires) VALUES (?, ?, ?) ON CONFLICT (user_id)"
            " DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
            (user_id, owner, now + lease),
        )


def snapshot(conn: sqlite3.Connection, name: str, limit: int = -1) -> list[MessageInfo]:
    """The maildrop in uid order; at most ``limit`` messages (-1: all of them)."""
    rows = conn.execute(_SNAPSHOT, (name, limit)).fetchall()
    if not rows:
        raise UnknownUser(f"no such user {name!r}")
    if rows[0][0] is None:  # the LEFT JOIN row of a user with an empty maildrop
        return []
    return list(map(MessageInfo._make, rows))


def usage(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(_USAGE, (name,)).fetchone()
    if row is None:
        raise UnknownUser(f"no such user {name!r}")
    return int(row[0])


def fetch(conn: sqlite3.Connection, name: str, uid: int) -> bytes | None:
    row = conn.execute(
        "SELECT m.wire FROM messages AS m JOIN users AS u ON u.id = m.user_id"
        " WHERE u.name = ? AND m.uid = ?",
        (name, uid),
    ).fetchone()
    return None if row is None else bytes(row[0])


def export_state(conn: sqlite3.Connection, name: str) -> MailboxState:
    """``name``'s counter, retrieval times, quota-warning flag and import keys."""
    # One read transaction, so the three reads agree with each other.
    conn.execute("BEGIN")
    try:
        row = conn.execute(
            "SELECT id, next_uid, quota_warned FROM users WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise UnknownUser(f"no such user {name!r}")
        retrieved = conn.execute(
            "SELECT uid, retrieved_at FROM messages WHERE user_id = ? AND retrieved_at IS NOT NULL",
            (row[0],),
        ).fetchall()
        keys = conn.execute("SELECT key FROM import_keys WHERE user_id = ?", (row[0],)).fetchall()
    finally:
        conn.execute("COMMIT")
    return MailboxState(
        next_uid=int(row[1]),
        retrieved_at={int(uid): float(at) for uid, at in retrieved},
        quota_warned=bool(row[2]),
        import_keys=frozenset(str(key) for (key,) in keys),
    )
