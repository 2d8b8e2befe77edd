"""``AdminRecords`` of the PostgreSQL store: ``admin_tokens``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from popbox.store.admin_records import TokenRecord

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Sequence

    import asyncpg


__all__ = ["PostgresAdminRecords"]


class _Store(Protocol):
    """What these records need of ``PostgresStore`` (named here: it imports this module)."""

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]: ...


_COLUMNS = "id, digest, scope, created_at, expires_at, note"


class PostgresAdminRecords:
    def __init__(self, store: _Store) -> None:
        self._store = store

    async def add_token(self, token: TokenRecord) -> None:
        sql = f"INSERT INTO admin_tokens ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"  # noqa: S608 - constant
        async with self._store.connection() as conn:
            await conn.execute(
                sql,
                token.id,
                token.digest,
                token.scope,
                token.created_at,
                token.expires_at,
                token.note,
            )

    async def tokens(self) -> Sequence[TokenRecord]:
        sql = f"SELECT {_COLUMNS} FROM admin_tokens ORDER BY created_at, id"  # noqa: S608 - constant
        async with self._store.connection() as conn:
            return [_token(row) for row in await conn.fetch(sql)]

    async def token_by_digest(self, digest: str) -> TokenRecord | None:
        sql = f"SELECT {_COLUMNS} FROM admin_tokens WHERE digest = $1"  # noqa: S608 - constant
        async with self._store.connection() as conn:
            row = await conn.fetchrow(sql, digest)
        return None if row is None else _token(row)

    async def revoke_token(self, token_id: str) -> bool:
        sql = "DELETE FROM admin_tokens WHERE id = $1 RETURNING id"
        async with self._store.connection() as conn:
            return await conn.fetchval(sql, token_id) is not None


def _token(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        digest=row["digest"],
        scope="admin" if row["scope"] == "admin" else "read",
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        note=row["note"],
    )
