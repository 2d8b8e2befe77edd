"""PostgreSQL for the operations tests: a throwaway database, or a whole private server.

``shared_server_dsn`` finds the machine's server as the store tests do (``PG_DSN``, else
the local trust-auth server on 127.0.0.1:5432); tests create a database of their own on
it and drop it afterwards.  ``PrivateServer`` is a cluster of the test's own (``initdb``
into a temporary folder, an ephemeral port), for tests that stop and start PostgreSQL:
stopping the machine's server would break every other test running at the time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

LOCAL_CANDIDATES = tuple(
    f"postgresql://{user}@127.0.0.1:5432/{database}"
    for user in ("postgres", "root")
    for database in ("test", "postgres")
)
TIMEOUT = 30.0


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close(timeout=5)


async def _reachable(dsn: str) -> bool:
    try:
        await _execute(dsn, "SELECT 1")
    except (OSError, asyncpg.PostgresError):
        return False
    return True


def shared_server_dsn() -> str:
    """The machine's PostgreSQL server (skip the test if there is none and PG_DSN is unset)."""
    configured = os.environ.get("PG_DSN", "")
    for candidate in [configured] if configured else LOCAL_CANDIDATES:
        if asyncio.run(_reachable(candidate)):
            return candidate
    if configured:
        pytest.fail(f"PG_DSN is set but no PostgreSQL server answers at {configured}")
    pytest.skip("needs PostgreSQL: set PG_DSN or run one on 127.0.0.1:5432 with trust auth")
    raise AssertionError  # pytest.skip raised


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


class ThrowawayDatabase:
    """``CREATE DATABASE popbox_ops_<random>`` on a server; ``drop()`` removes it."""

    def __init__(self, server: str) -> None:
        self._server = server
        self.name = f"popbox_ops_{secrets.token_hex(6)}"
        asyncio.run(_execute(server, f'CREATE DATABASE "{self.name}"'))
        self.dsn = with_database(server, self.name)

    def drop(self) -> None:
        asyncio.run(
            _execute(
                self._server,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # noqa: S608 - our hex name
                f" WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
                f'DROP DATABASE IF EXISTS "{self.name}"',
            )
        )


def _bin(name: str) -> str:
    found = sorted(map(str, Path("/usr/lib/postgresql").glob(f"*/bin/{name}")))
    found = found or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.fail(f"{name} is not installed: the PostgreSQL server package provides it")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    """A PostgreSQL cluster of this test alone, which it may stop and start at will."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root, and the server runs as
        # the postgres user when the tests run as root (initdb refuses root).
        self.directory = Path(tempfile.mkdtemp(prefix="popbox-pg-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        as_owner = self._as_owner()
        if as_owner:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            [*as_owner, _bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _as_owner() -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._ctl("start", "-o", options, "-l", str(self.directory / "server.log"))

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def _ctl(self, action: str, *extra: str) -> None:
        subprocess.run(
            [*self._as_owner(), _bin("pg_ctl"), action, "-D", str(self.data), "-w", *extra],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
