"""``popbox migrate-store`` (SQLite to PostgreSQL) and ``popbox stats``."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from ops_helpers import login, start_node
from pg_helpers import ThrowawayDatabase, shared_server_dsn
from popbox.store import open_store
from popbox.store.message import prepare
from popbox_servers import USERS, popbox_executable, provision

MESSAGES = [f"Subject: {n}\r\n\r\nbody {n}\r\n".encode() for n in range(5)]


def popbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [popbox_executable(), *args], capture_output=True, text=True, timeout=60, check=False
    )


async def contents(store_kind: str, where: str) -> dict[str, list[tuple[int, str, bytes | None]]]:
    store = open_store(store_kind, data_dir=Path(where), dsn=where)
    await store.open()
    try:
        found = {}
        for user in await store.list_users():
            found[user.name] = [
                (info.uid, info.uidl, await store.fetch(user.name, info.uid))
                for info in await store.snapshot(user.name)
            ]
        return found
    finally:
        await store.close()


@pytest.fixture
def database():
    created = ThrowawayDatabase(shared_server_dsn())
    yield created
    created.drop()


def test_migrate_store_moves_everything_and_keeps_uids(tmp_path, database):
    """C0007-C0009: unique-ids survive the move, and deleted ones are never reused."""
    source = tmp_path / "data"
    delivered = provision(source, USERS, {"alice": MESSAGES, "bob": MESSAGES[:2]})
    removed = [d.info.uid for d in delivered["alice"][-2:]]  # the newest two are deleted

    async def delete() -> None:
        store = open_store("sqlite", data_dir=source, dsn="")
        await store.open()
        await store.delete("alice", removed)
        await store.close()

    asyncio.run(delete())
    result = popbox("migrate-store", "--from", f"sqlite:{source}", "--to", database.dsn)
    assert result.returncode == 0, result.stderr
    assert "copied 5 messages" in result.stdout
    assert asyncio.run(contents("postgresql", database.dsn)) == asyncio.run(
        contents("sqlite", str(source))
    )

    async def deliver_after() -> int:
        store = open_store("postgresql", data_dir=Path(), dsn=database.dsn)
        await store.open()
        try:
            return (await store.deliver("alice", prepare(b"Subject: new\r\n\r\nx\r\n"))).uid
        finally:
            await store.close()

    assert asyncio.run(deliver_after()) > max(removed)  # the counter came along

    again = popbox("migrate-store", "--from", f"sqlite:{source}", "--to", database.dsn)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_migrate_store_refuses_what_it_cannot_open(tmp_path):
    result = popbox("migrate-store", "--from", f"sqlite:{tmp_path}/none", "--to", "mysql://x")
    assert result.returncode == 1
    assert "popbox migrate-store:" in result.stderr


def test_stats_shows_the_store_and_the_running_server(tmp_path, tls_files):
    node = start_node(
        tmp_path / "node",
        tls_files,
        sections={"server": {"workers": 2, "metrics_listen": "127.0.0.1:0"}},
        pop3={"login_type": "plaintext_login"},
        messages={"alice": MESSAGES},
        kinds=frozenset({"pop3", "metrics"}),
    )
    try:
        for _ in range(3):
            login(node.port()).quit()
        # stats reads the metrics address from the file: point it at the real port.
        node.rewrite_config(server={"metrics_listen": f"127.0.0.1:{node.port('metrics')}"})
        result = popbox("stats", "--config", str(node.config_path))
        assert result.returncode == 0, result.stderr
        lines = dict(line.split("\t") for line in result.stdout.splitlines())
        assert lines["users"] == str(len(USERS))
        assert lines["messages"] == str(len(MESSAGES))
        assert lines["workers"] == "2"
        assert lines["logins"] == "3"
        assert lines["connections open"] == "0"
    finally:
        node.process.close()
