"""Helpers for the tests of what each process copies from PostgreSQL (the lockouts, the
user records): waiting for a notification to arrive, and counting uses of the pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import asyncpg

from popbox.store.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import pytest

WAIT = 10.0  # seconds a notification or a reconnection may take, at most


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.02)


def pool_uses(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every use of the store's pool by what is made from it afterwards."""
    used: list[str] = []
    connection = store.connection

    def counted():  # type: ignore[no-untyped-def]
        used.append("pool")
        return connection()

    monkeypatch.setattr(store, "connection", counted)
    return used


async def run_sql(dsn: str, sql: str) -> None:
    """``sql`` on a connection of its own, as an administrator's client would run it."""
    admin = await asyncpg.connect(dsn, timeout=5.0)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


# Every other session of the database ends: the pools' and the listeners'.
END_OTHER_SESSIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@contextlib.asynccontextmanager
async def two_nodes(dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two nodes have, opened and closed around the block."""
    stores = [PostgresStore(dsn, max_size=2) for _ in range(2)]
    try:
        for store in stores:
            await store.open()
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()
