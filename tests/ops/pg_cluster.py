"""A PostgreSQL primary with a synchronous streaming standby, built from scratch for a test.

``ReplicatedCluster`` runs ``initdb`` for the primary and ``pg_basebackup -R`` for the
standby, each on an ephemeral loopback port under one temporary folder, and makes the
standby synchronous (``synchronous_standby_names = '*'`` on the primary, so a commit
returns once the standby has flushed it).  ``kill_primary`` SIGKILLs the primary's
postmaster and every backend of it at once (a machine that dies), ``promote`` runs
``pg_ctl promote`` on the standby, and ``rebuild_standby`` makes a new standby of the
new primary on the dead one's port, so that a test can fail over again and again with
the same host list in its DSN.  Every subprocess and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from pg_helpers import _bin, _free_port

__all__ = ["ReplicatedCluster"]

TIMEOUT = 60.0
START_ATTEMPTS = 5  # pg_ctl start attempts for one server


class ReplicatedCluster:
    """Two PostgreSQL servers: ``primary`` and ``standby`` are indexes into ``ports``."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: the servers run as the postgres user under root.
        self.directory = Path(tempfile.mkdtemp(prefix="popbox-ha-"))
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.ports = [_free_port(), _free_port()]
        self.primary, self.standby = 0, 1
        self._run(_bin("initdb"), "-D", str(self._data(0)), "-U", "postgres", "-A", "trust")
        self._start(0)
        self.rebuild_standby()

    @property
    def dsn(self) -> str:
        """Both hosts, libpq style: whichever is the primary is the one connected to."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    def primary_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[self.primary]}/postgres"

    def rebuild_standby(self) -> None:
        """A fresh standby of the primary on the standby's port, then synchronous."""
        index = self.standby
        shutil.rmtree(self._data(index), ignore_errors=True)
        self._run(
            _bin("pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.ports[self.primary]), "-U", "postgres"),
            *("-D", str(self._data(index)), "-R", "-X", "stream", "-c", "fast"),
        )
        self._start(index)
        self._sql(self.primary_dsn(), "ALTER SYSTEM SET synchronous_standby_names = '*'")
        self._sql(self.primary_dsn(), "SELECT pg_reload_conf()")
        deadline = time.monotonic() + TIMEOUT
        while (
            self._sql(
                self.primary_dsn(),
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                " AND state = 'streaming'",
            )
            != 1
        ):
            assert time.monotonic() < deadline, "the standby did not become synchronous"
            time.sleep(0.1)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and all its children at the same moment."""
        data = self._data(self.primary)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster, *_children(postmaster)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
            assert time.monotonic() < deadline, "the killed primary's processes linger"
            time.sleep(0.05)
        (data / "postmaster.pid").unlink(missing_ok=True)

    def promote(self) -> None:
        """Make the standby the primary (waits until it accepts writes)."""
        self._run(_bin("pg_ctl"), "promote", "-w", "-D", str(self._data(self.standby)))
        self.primary, self.standby = self.standby, self.primary

    def close(self) -> None:
        try:
            for index in (0, 1):
                if (self._data(index) / "postmaster.pid").exists():
                    self._run(
                        _bin("pg_ctl"), "stop", "-m", "immediate", "-D", str(self._data(index))
                    )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _data(self, index: int) -> Path:
        return self.directory / f"node{index}"

    def _start(self, index: int) -> None:
        options = (
            f"-p {self.ports[index]} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c wal_level=replica -c max_wal_senders=4 -c fsync=on"
        )
        log = self.directory / f"server{index}.log"
        command = (_bin("pg_ctl"), "start", "-w", "-D", str(self._data(index)), "-o", options)
        # The port a killed server had may be held a moment longer, e.g. as the source
        # port of a client's reconnect attempt: try again a few times before failing.
        for attempt in range(START_ATTEMPTS):
            if self._try(*command, "-l", str(log)):
                return
            time.sleep(0.5 * (attempt + 1))
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise AssertionError(f"pg_ctl start failed {START_ATTEMPTS} times; the log ends: {tail}")

    def _try(self, *command: str) -> bool:
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*owner, *command], capture_output=True, timeout=TIMEOUT, check=False)
        return done.returncode == 0

    def _run(self, *command: str) -> None:
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*owner, *command], capture_output=True, timeout=TIMEOUT, check=False)
        assert done.returncode == 0, f"{command[0]} failed: {done.stderr.decode()[-2000:]}"

    @staticmethod
    def _sql(dsn: str, statement: str) -> object:
        async def run() -> object:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return await conn.fetchval(statement, timeout=10)
            finally:
                await conn.close(timeout=5)

        return asyncio.run(run())


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
