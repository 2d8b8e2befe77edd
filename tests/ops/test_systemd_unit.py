"""packaging/popbox.service: valid for systemd, and in step with how popbox stops."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

from popbox.config import Pop3Config
from popbox.node.worker_slots import KILL_AFTER
from popbox_servers import popbox_executable

UNIT = Path(__file__).parents[2] / "packaging" / "popbox.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser["Service"]


def test_systemd_accepts_the_unit(tmp_path):
    """No warning from systemd's own checker (unknown keys, bad values)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: run scripts/setup (Debian systemd)"
    unit = tmp_path / "popbox.service"
    # verify checks that ExecStart's program exists: point it at this installation.
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/popbox", popbox_executable()),
        encoding="utf-8",
    )
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert result.stdout.strip() == ""


def test_unit_gives_the_drain_time_to_finish():
    """SIGTERM goes to the supervisor alone, and systemd waits longer than the drain."""
    unit = service()
    assert unit["KillMode"] == "mixed"
    assert unit["KillSignal"] == "SIGTERM"
    assert int(unit["TimeoutStopSec"]) > Pop3Config().shutdown_grace + KILL_AFTER
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["ExecStart"].split()[1:] == ["serve", "--config", "/etc/popbox/popbox.toml"]
