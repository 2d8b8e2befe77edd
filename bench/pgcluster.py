"""A private PostgreSQL cluster for benchmarking popbox's PostgreSQL mode.

``initdb`` into the bench's temp dir, then one postmaster on an ephemeral 127.0.0.1 port
with its socket in the same dir, so the machine's own PostgreSQL is never touched and
the run leaves nothing behind.  The cluster runs on the same machine as both mail
servers, so its CPU time belongs to popbox's: ``cpu_seconds`` covers the postmaster
and its backends (the reaped ones included, through the postmaster's ``cutime``).

Durability is PostgreSQL's default (fsync on, synchronous_commit on): a delivery is
acknowledged only once its commit is on disk, as with SQLite's synchronous=FULL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import procs
import servers

__all__ = ["PostgresCluster", "available"]

START_TIMEOUT = 120
# Enough for popbox's pools (every worker's) and the bench's own provisioning.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "256MB",
}


def _bin(name: str) -> str | None:
    found = sorted(map(str, Path("/usr/lib/postgresql").glob(f"*/bin/{name}")))
    return found[-1] if found else shutil.which(name)


def available() -> str | None:
    """Why a private cluster cannot be started here, or None when it can."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "initdb/pg_ctl not found (Debian package postgresql)"
    return None


class PostgresCluster:
    """One cluster under ``root/pg``, owned by the postgres user when run as root."""

    def __init__(self, root: Path) -> None:
        self.directory = root / "pg"
        self.directory.mkdir()
        self.data = self.directory / "data"
        self.port = servers.free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:  # initdb refuses to run as root
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        options = " ".join(
            [f"-p {self.port}", f"-k {self.directory}"]
            + [f"-c {key}={value}" for key, value in SETTINGS.items()]
        )
        log = str(self.directory / "server.log")
        self._run(_bin("pg_ctl"), "start", "-D", str(self.data), "-w", "-o", options, "-l", log)

    @property
    def pid(self) -> int:
        """The postmaster's pid (the first line of postmaster.pid)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.pid)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_bin("pg_ctl"), "stop", "-D", str(self.data), "-w", "-m", "fast")

    def _run(self, program: str | None, *args: str) -> None:
        assert program is not None, "checked by available()"
        done = subprocess.run(
            [*self._as_owner, program, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(program).name} failed: {done.stderr.strip()[-2000:]}")
