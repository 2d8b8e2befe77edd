"""Writing ``messages`` rows in PostgreSQL: many small ones by COPY, a spooled one in pieces.

Theory of operation: rows whose wire form is in memory go in with one binary COPY, one
round trip for a whole batch.  A message spooled to a file (``store.spooled``: a large
import) would have to be read whole to be a COPY record or a bound parameter, so it
goes to the server a piece at a time into a large object, from which one INSERT takes
the value (``lo_get``: the server assembles it, the client never does); the large object
is dropped in the same transaction.  A rollback undoes all of it, so the caller's
commit stays the one point at which the message is stored.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from popbox.store.spooled import SpooledWire

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import TypeAlias

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from popbox.protocol.message_info import MessageInfo
    from popbox.store.base import NewMessage

    Conn: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

__all__ = ["copy_rows", "insert_messages", "message_row"]

_MESSAGE_COLUMNS = (
    "user_id",
    "uid",
    "size",
    "stored_size",
    "received_at",
    "retrieved_at",
    "legacy_uidl",
    "wire",
)
_INSERT_FROM_LARGE_OBJECT = (
    "INSERT INTO messages (user_id, uid, size, stored_size, received_at, retrieved_at,"
    " legacy_uidl, wire) VALUES ($1, $2, $3, $4, $5, $6, $7, lo_get($8))"
)


def message_row(user_id: int, info: MessageInfo, message: NewMessage) -> tuple[object, ...]:
    """The ``messages`` columns of one message in ``_MESSAGE_COLUMNS`` order."""
    sizes = (info.uid, info.size, info.stored_size, info.received_at)
    return (user_id, *sizes, message.retrieved_at, info.legacy_uidl, message.wire)


async def copy_rows(conn: Conn, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert whole ``messages`` rows with binary COPY: one round trip for a batch."""
    if rows:
        await conn.copy_records_to_table("messages", records=rows, columns=_MESSAGE_COLUMNS)


async def insert_messages(
    conn: Conn, user_id: int, infos: Sequence[MessageInfo], messages: Sequence[NewMessage]
) -> None:
    """Insert ``messages`` (with their ``infos``) inside the caller's transaction."""
    in_memory = []
    for info, message in zip(infos, messages, strict=True):
        row = message_row(user_id, info, message)
        if isinstance(message.wire, SpooledWire):
            await _insert_spooled(conn, row[:-1], message.wire)
        else:
            in_memory.append(row)
    await copy_rows(conn, in_memory)


async def _insert_spooled(conn: Conn, columns: tuple[object, ...], wire: SpooledWire) -> None:
    oid = await conn.fetchval("SELECT lo_create(0)")
    pieces = wire.pieces()
    offset = 0
    # The file is read off the event loop: a server process's loop must not wait on it.
    while (piece := await asyncio.to_thread(_next_piece, pieces)) is not None:
        await conn.execute("SELECT lo_put($1, $2, $3)", oid, offset, piece)
        offset += len(piece)
    await conn.execute(_INSERT_FROM_LARGE_OBJECT, *columns, oid)
    await conn.execute("SELECT lo_unlink($1)", oid)


def _next_piece(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)
