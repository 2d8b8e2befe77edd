"""The numbered-migration rules shared by the SQL backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from popbox.store import migrate
from popbox.store.base import StorePermanentError

if TYPE_CHECKING:
    from pathlib import Path


def _write(root: Path, *names: str) -> Path:
    (root / "demo").mkdir()
    for name in names:
        (root / "demo" / name).write_text(f"-- {name}\n", encoding="utf-8")
    return root


def test_shipped_sqlite_migrations_are_numbered_from_one() -> None:
    """Migrations are numbered 0001, 0002, ... and ship as package data."""
    migrations = migrate.load("sqlite")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE users" in migrations[0].sql


def test_load_orders_by_version_and_ignores_other_files(tmp_path: Path) -> None:
    """Files are applied in version order, whatever order the directory lists them in."""
    root = _write(tmp_path, "0002_second.sql", "0001_first.sql", "README")
    loaded = migrate.load("demo", root=root)
    assert [(m.version, m.name) for m in loaded] == [(1, "first"), (2, "second")]
    assert loaded[1].sql == "-- 0002_second.sql\n"


@pytest.mark.parametrize(
    "names",
    [("0001_a.sql", "0003_c.sql"), ("0002_b.sql",), ("0001_a.sql", "0001_b.sql"), ("1_a.sql",)],
)
def test_gaps_duplicates_and_bad_names_are_refused(tmp_path: Path, names: tuple[str, ...]) -> None:
    """A gap means a file missing from the package: running the later steps would be wrong."""
    root = _write(tmp_path, *names)
    with pytest.raises(migrate.MigrationError):
        migrate.load("demo", root=root)


def test_unknown_or_invalid_backend_is_refused(tmp_path: Path) -> None:
    """Only shipped migration sets can be loaded."""
    with pytest.raises(migrate.MigrationError):
        migrate.load("nosuch", root=tmp_path)
    with pytest.raises(migrate.MigrationError):
        migrate.load("../sqlite")


def test_pending_lists_the_steps_after_the_current_version() -> None:
    """A database at version n needs exactly the migrations numbered above n."""
    steps = tuple(migrate.Migration(v, f"m{v}", "") for v in (1, 2, 3))
    assert migrate.pending(steps, 0) == steps
    assert migrate.pending(steps, 2) == steps[2:]
    assert migrate.pending(steps, 3) == ()


def test_database_newer_than_code_is_a_permanent_error() -> None:
    """An older popbox must not touch a schema it does not know: an administrator decides."""
    steps = (migrate.Migration(1, "initial", ""),)
    with pytest.raises(StorePermanentError, match="newer than this popbox"):
        migrate.pending(steps, 2)
