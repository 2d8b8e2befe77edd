"""Running the ``popbox`` command against an in-process server's data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popbox_servers import InProcessServer

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
