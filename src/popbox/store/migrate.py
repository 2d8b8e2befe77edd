"""Numbered schema migrations shipped as package data, shared by the SQL backends.

Theory of operation: each backend has a directory ``migrations/<backend>/`` of files
named ``NNNN_description.sql``, numbered from 0001 without gaps.  A database records
every applied version in a ``schema_version`` table.  ``load`` reads and checks the
files, ``pending`` compares them with the database's version, and the backend applies
each pending migration together with its ``schema_version`` row in one transaction, so
that an interrupted upgrade leaves the previous version intact.  Applying a migration is
driver-specific (``sqlite3`` is blocking, a PostgreSQL driver is not), so that loop lives
in each backend; the rules about which files exist and which must run live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from popbox.store.base import StorePermanentError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.resources.abc import Traversable

__all__ = [
    "SCHEMA_VERSION_DDL",
    "Migration",
    "MigrationError",
    "load",
    "pending",
]

# Plain SQL that SQLite and PostgreSQL both accept, so every backend records versions alike.
SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
)

_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_BACKEND_NAME = re.compile(r"[a-z0-9_]+")


class MigrationError(StorePermanentError):
    """The shipped migrations or the database's schema version cannot be reconciled."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its number, the description from its file name, and its SQL."""

    version: int
    name: str
    sql: str


def load(backend: str, *, root: Traversable | None = None) -> tuple[Migration, ...]:
    """Every migration shipped for ``backend``, ordered by version.

    ``root`` is the directory holding one subdirectory per backend; by default the
    ``migrations`` package data of ``popbox.store``.

    Raises ``MigrationError`` if a file name does not follow ``NNNN_description.sql`` or
    the versions are not exactly 1, 2, ... n: a gap would mean a missing file in the
    package, and running the later steps without it would build a wrong schema.
    """
    if _BACKEND_NAME.fullmatch(backend) is None:
        raise MigrationError(f"invalid migration set name {backend!r}")
    if root is None:
        root = resources.files("popbox.store").joinpath("migrations")
    directory = root.joinpath(backend)
    if not directory.is_dir():
        raise MigrationError(f"no migrations are shipped for the {backend!r} backend")
    found: list[Migration] = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"{backend} migrations must be numbered 1..n without gaps, found {versions}"
        )
    return tuple(found)


def pending(migrations: Sequence[Migration], current: int) -> tuple[Migration, ...]:
    """The migrations a database at schema version ``current`` still needs, in order.

    Raises ``MigrationError`` when the database is newer than this code: running an older
    popbox against it could misread or damage data, so an administrator must decide.
    """
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise MigrationError(
            f"the database schema is version {current}, newer than this popbox "
            f"(which knows up to {latest}); upgrade popbox"
        )
    return tuple(migration for migration in migrations if migration.version > current)
