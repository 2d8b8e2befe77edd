"""Fixtures for store tests: a throwaway PostgreSQL database per test.

``pg_dsn`` finds a server (``PG_DSN`` if set, else the local trust-auth server as
``postgres`` or ``root``), creates ``popbox_test_<random>`` on it and drops it after the
test, so tests pass on a freshly started server and in parallel runs.  When ``PG_DSN``
is set an unreachable server fails the test (CI must really run them); without it and
without a local server the test is skipped.

The administrative work runs with ``asyncio.run`` on a helper thread, so the fixture is
synchronous and usable from sync and async fixtures and tests alike, and never touches
the event loop pytest-asyncio runs the test in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

try:
    import asyncpg
except ImportError:  # an optional driver: without it only the PostgreSQL tests skip
    asyncpg = None

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

_T = TypeVar("_T")

# The "test" database first, then the maintenance database every fresh server has.
LOCAL_CANDIDATES = tuple(
    f"postgresql://{user}@127.0.0.1:5432/{database}"
    for user in ("postgres", "root")
    for database in ("test", "postgres")
)
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh event loop in another thread."""
    with ThreadPoolExecutor(1, thread_name_prefix="pg-admin") as pool:
        return pool.submit(asyncio.run, coro).result(timeout=2 * COMMAND_TIMEOUT)


def with_database(dsn: str, database: str) -> str:
    """The URL ``dsn`` pointing at ``database`` instead."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


async def admin_connect(dsn: str) -> Any:
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)


async def _reachable(dsn: str) -> bool:
    try:
        conn = await admin_connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close(timeout=CONNECT_TIMEOUT)
    return True


async def _find_server() -> str | None:
    configured = os.environ.get("PG_DSN", "")
    if configured:
        return configured
    for candidate in LOCAL_CANDIDATES:
        if await _reachable(candidate):
            return candidate
    return None


async def _create(server: str, name: str) -> None:
    conn = await admin_connect(server)
    try:
        # Identifiers cannot be parameters; the name is ours, lower-case hex only.
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)


async def _drop(server: str, name: str) -> None:
    conn = await admin_connect(server)
    try:
        # A store the test forgot to close must not keep its database alive.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The DSN of a reachable PostgreSQL server's maintenance database (see module doc)."""
    if asyncpg is None:
        if os.environ.get("PG_DSN"):
            pytest.fail("PG_DSN is set but asyncpg is not installed")
        pytest.skip("asyncpg is not installed")
    server = run_sync(_find_server())
    if server is None:
        pytest.skip(
            "PostgreSQL tests need a server: set PG_DSN or run one on 127.0.0.1:5432"
            " with trust auth for postgres or root"
        )
    if not server.startswith(("postgresql://", "postgres://")):
        pytest.fail("PG_DSN must be a postgresql:// URL: asyncpg reads no key=value strings")
    if not run_sync(_reachable(server)):
        pytest.fail(f"PG_DSN is set but no PostgreSQL server answers at {server}")
    return server


@pytest.fixture
def pg_new_database(pg_server: str) -> Iterator[Callable[[], str]]:
    """A factory of DSNs for empty databases of their own, all dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"popbox_test_{secrets.token_hex(6)}"
        run_sync(_create(pg_server, name))
        created.append(name)
        return with_database(pg_server, name)

    try:
        yield make
    finally:
        for name in reversed(created):
            run_sync(_drop(pg_server, name))


@pytest.fixture
def pg_dsn(pg_new_database: Callable[[], str]) -> str:
    """A DSN for a database of its own, created empty for this test and dropped after it."""
    return pg_new_database()
