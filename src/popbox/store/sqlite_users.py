"""The SQL on SQLite's ``users`` table behind ``SqliteStore``'s user methods.

Theory of operation: each user operation is one statement, so none needs the write
transaction ``sqlite_ops`` wraps around its writers.  ``add_user`` is one INSERT, and
names are UNIQUE in the table, so the second of two adds for one name fails with
``UserExists``.  The store's changes and removals are single UPDATE and DELETE
statements, and ``require_change`` turns one that changed no row into ``UnknownUser``.
Reads fetch raw rows (``user_rows``: ``get_user`` on the login path runs it on the event
loop's thread, as ``SqliteStore`` explains), which ``user_record`` checks and turns
into ``UserRecord``s.
"""

from __future__ import annotations

import json
import sqlite3

from popbox.store.base import StorePermanentError, UnknownUser, UserExists, UserRecord

__all__ = ["add_user", "require_change", "user_record", "user_rows"]

_CONSTRAINT_UNIQUE = 2067


def require_change(cursor: sqlite3.Cursor, name: str) -> None:
    if cursor.rowcount == 0:
        raise UnknownUser(f"no such user {name!r}")


def user_record(row: tuple[str, str, int | None, str | None]) -> UserRecord:
    name, verifiers_json, quota, disabled = row
    try:
        verifiers = json.loads(verifiers_json)
    except ValueError as exc:
        raise StorePermanentError(f"user {name!r} has unreadable verifiers") from exc
    if not isinstance(verifiers, dict) or not all(
        isinstance(value, str) for value in verifiers.values()
    ):
        raise StorePermanentError(f"user {name!r} has unreadable verifiers")
    return UserRecord(name=name, verifiers=verifiers, quota=quota, disabled_reason=disabled)


def add_user(
    conn: sqlite3.Connection, name: str, verifiers: str, quota: int | None, now: float
) -> None:
    try:
        conn.execute(
            "INSERT INTO users (name, verifiers, quota, created) VALUES (?, ?, ?, ?)",
            (name, verifiers, quota, now),
        )
    except sqlite3.IntegrityError as exc:
        if getattr(exc, "sqlite_errorcode", None) == _CONSTRAINT_UNIQUE:
            raise UserExists(f"user {name!r} already exists") from exc
        raise


def user_rows(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...]
) -> list[tuple[str, str, int | None, str | None]]:
    rows: list[tuple[str, str, int | None, str | None]] = conn.execute(sql, params).fetchall()
    return rows
