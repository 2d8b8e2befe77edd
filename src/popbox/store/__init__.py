"""Mailbox stores: the ``MailStore`` contract and a factory for the configured backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from popbox.store.base import MailStore, StorePermanentError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["SQLITE_FILE_NAME", "open_store"]

SQLITE_FILE_NAME = "popbox.sqlite3"


def open_store(
    backend: str,
    *,
    data_dir: Path,
    dsn: str,  # noqa: ARG001 -- read by the postgresql backend, which is not here yet
    clock: Callable[[], float] = time.time,
) -> MailStore:
    """Build the store ``[storage] backend`` names; the caller then awaits ``open()``.

    ``"sqlite"`` keeps everything in ``data_dir / "popbox.sqlite3"``; ``"memory"`` keeps
    nothing across restarts (tests, demos).  ``clock`` (POSIX seconds) measures lock
    leases and default receive times.  Raises ``StorePermanentError`` for
    ``"postgresql"``, which this version does not provide, and ``ValueError`` for a name
    no version knows (configuration validation should have caught it first).
    """
    # Imported here so that choosing one backend never loads the others' drivers.
    if backend == "sqlite":
        from popbox.store.sqlite import SqliteStore  # noqa: PLC0415

        return SqliteStore(data_dir / SQLITE_FILE_NAME, clock=clock)
    if backend == "memory":
        from popbox.store.memory import MemoryStore  # noqa: PLC0415

        return MemoryStore(clock=clock)
    if backend == "postgresql":
        raise StorePermanentError(
            'storage backend "postgresql" is not available yet in this version of popbox;'
            ' set [storage] backend = "sqlite"'
        )
    raise ValueError(f"unknown storage backend {backend!r}; expected sqlite or memory")
