"""Mailbox stores: the ``MailStore`` contract and a factory for the configured backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from popbox.store.base import MailStore, StorePermanentError
from popbox.store.memory import MemoryStore
from popbox.store.postgres_options import PostgresOptions
from popbox.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from popbox.config import Config

__all__ = ["SQLITE_FILE_NAME", "PostgresOptions", "open_configured", "open_store"]

SQLITE_FILE_NAME = "popbox.sqlite3"


def open_store(
    backend: str,
    *,
    data_dir: Path,
    dsn: str,
    clock: Callable[[], float] = time.time,
    postgres: PostgresOptions | None = None,
) -> MailStore:
    """Build the store ``[storage] backend`` names; the caller then awaits ``open()``.

    ``"sqlite"`` keeps everything in ``data_dir / "popbox.sqlite3"``; ``"memory"`` keeps
    nothing across restarts (tests, demos); ``"postgresql"`` uses the database at ``dsn``
    (``postgresql://...``), which several nodes may share.  ``clock`` (POSIX seconds)
    measures lock leases and default receive times; ``postgres`` carries ``[storage]``'s
    other PostgreSQL settings.  Raises ``StorePermanentError`` for
    ``"postgresql"`` without a ``dsn``, and ``ValueError`` for a name no version knows
    (configuration validation should have caught both first).
    """
    if backend == "sqlite":
        return SqliteStore(data_dir / SQLITE_FILE_NAME, clock=clock)
    if backend == "memory":
        return MemoryStore(clock=clock)
    if backend == "postgresql":
        if not dsn:
            # An empty DSN would make the driver fall back to PGHOST and friends, which
            # nobody configuring popbox.toml expects.
            raise StorePermanentError('[storage] dsn is required when backend = "postgresql"')
        # asyncpg is loaded only by a node that uses PostgreSQL.
        from popbox.store.postgres import PostgresStore  # noqa: PLC0415 - optional dependency

        return PostgresStore(dsn, clock=clock, options=postgres)
    raise ValueError(f"unknown storage backend {backend!r}; expected sqlite, postgresql or memory")


def open_configured(config: Config, *, clock: Callable[[], float] = time.time) -> MailStore:
    """``open_store`` for the store ``config``'s ``[storage]`` and ``data_dir`` name."""
    storage = config.storage
    return open_store(
        storage.backend,
        data_dir=config.data_dir,
        dsn=storage.dsn,
        clock=clock,
        postgres=PostgresOptions.from_config(storage),
    )
