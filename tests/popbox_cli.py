"""Running the ``popbox`` command, and reaching the SQLite store it works on."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from popbox.store import open_store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from popbox.store.base import MailStore
    from popbox_servers import InProcessServer

_T = TypeVar("_T")

TIMEOUT = 120


def popbox_command() -> str:
    """The ``popbox`` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "popbox"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("popbox")
    assert found, "the popbox command is not installed: run scripts/setup"
    return found


def popbox(
    target: InProcessServer, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``popbox VERB KIND --config FILE ARGS...`` on ``target``'s store; never raises."""
    command = popbox_command()
    config = target.config.data_dir / "import.toml"
    config.write_text(f'data_dir = "{target.config.data_dir}"\n')
    verb, kind, *rest = args
    return subprocess.run(
        [command, verb, kind, "--config", str(config), *rest],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def in_store(data_dir: Path, work: Callable[[MailStore], Awaitable[_T]]) -> _T:
    """``work(store)`` on the SQLite store in ``data_dir``, opened and closed around it."""

    async def run() -> _T:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())
