"""Fixtures of the ACME tests: a Pebble CA on loopback, and configurations that use it."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest
from pebble import Pebble, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

if shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None:
    pytest.fail("the ACME tests need Debian's pebble package (scripts/setup installs it)")


@pytest.fixture
def start_pebble(tmp_path: Path) -> Iterator[Callable[..., Pebble]]:
    """Factory: ``start_pebble(validity=40)`` runs a Pebble for one test, stopped after it."""
    started: list[Pebble] = []

    def start(validity: int | None = None) -> Pebble:
        pebble = Pebble(tmp_path / f"pebble{len(started)}", free_port(), validity).start()
        started.append(pebble)
        return pebble

    yield start
    for pebble in started:
        pebble.stop()
