"""``AdminRecords`` of the SQLite store: ``admin_tokens``."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Protocol

from popbox.store.admin_records import TokenRecord

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["SqliteAdminRecords"]


class _Store(Protocol):
    """What these records need of ``SqliteStore`` (named here: it imports this module)."""

    async def write(self, operation: Any, *args: Any) -> Any: ...
    async def read_pooled(self, operation: Any, *args: Any) -> Any: ...
    def read_inline(self, operation: Any, *args: Any) -> Any: ...


_COLUMNS = "id, digest, scope, created_at, expires_at, note"


class SqliteAdminRecords:
    def __init__(self, store: _Store) -> None:
        self._store = store

    async def add_token(self, token: TokenRecord) -> None:
        sql = f"INSERT INTO admin_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant
        row = (token.id, token.digest, token.scope, token.created_at, token.expires_at, token.note)
        await self._store.write(sqlite3.Connection.execute, sql, row)

    async def tokens(self) -> Sequence[TokenRecord]:
        sql = f"SELECT {_COLUMNS} FROM admin_tokens ORDER BY created_at, id"  # noqa: S608 - constant
        return [_token(row) for row in await self._store.read_pooled(_rows, sql, ())]

    async def token_by_digest(self, digest: str) -> TokenRecord | None:
        sql = f"SELECT {_COLUMNS} FROM admin_tokens WHERE digest = ?"  # noqa: S608 - constant
        rows = self._store.read_inline(_rows, sql, (digest,))
        return _token(rows[0]) if rows else None

    async def revoke_token(self, token_id: str) -> bool:
        sql = "DELETE FROM admin_tokens WHERE id = ?"
        cursor = await self._store.write(sqlite3.Connection.execute, sql, (token_id,))
        return bool(cursor.rowcount > 0)


def _rows(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
    return conn.execute(sql, args).fetchall()


def _token(row: tuple[object, ...]) -> TokenRecord:
    token_id, digest, scope, created_at, expires_at, note = row
    return TokenRecord(
        id=str(token_id),
        digest=str(digest),
        scope="admin" if scope == "admin" else "read",
        created_at=float(created_at),  # type: ignore[arg-type]
        expires_at=None if expires_at is None else float(expires_at),  # type: ignore[arg-type]
        note=str(note),
    )
