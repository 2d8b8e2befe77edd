"""A change to an account made on one node reaches the next login on every other node.

Each process keeps the user records its logins read (``postgres_accounts_copy``); the
database notifies every node when a change to one commits.  Two nodes of two workers
share a PostgreSQL database: after alice has logged in on both, ``popbox user disable``
run against the second node's configuration refuses her next login on the first, as a
disabled account (RFC 3206 SYS/PERM), and ``enable`` lets her in again.
"""

from __future__ import annotations

import poplib
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from ops_helpers import TIMEOUT, start_node
from pg_helpers import ThrowawayDatabase, shared_server_dsn
from popbox_cli import popbox_command
from popbox_servers import USERS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ops_helpers import Node
    from popbox_servers import TlsFiles

POP3 = {"login_type": "plaintext_login", "tls_listen": []}
NOTIFIED_WITHIN = 5.0  # seconds: the notification takes milliseconds


@pytest.fixture
def database() -> Iterator[ThrowawayDatabase]:
    made = ThrowawayDatabase(shared_server_dsn())
    try:
        yield made
    finally:
        made.drop()


def login_reply(node: Node) -> bytes:
    client = poplib.POP3("127.0.0.1", node.port(), timeout=TIMEOUT)
    try:
        client.user("alice")
        reply = client.pass_(USERS["alice"])
        client.quit()
    except poplib.error_proto as exc:
        reply = exc.args[0]
    finally:
        client.close()
    return reply


def user_command(node: Node, *args: str) -> None:
    done = subprocess.run(
        [popbox_command(), "user", *args, "--config", str(node.config_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def every_login(node: Node, starts: bytes) -> None:
    """Logins until one starts with ``starts`` (within the bound), then four more that do:
    with two workers, each has heard."""
    deadline = time.monotonic() + NOTIFIED_WITHIN
    while not login_reply(node).startswith(starts):
        assert time.monotonic() < deadline, f"no login answered {starts!r} in time"
        time.sleep(0.05)
    assert all(login_reply(node).startswith(starts) for _ in range(4))


def test_disabling_on_one_node_refuses_the_next_login_on_the_other(
    tmp_path: Path, tls_files: TlsFiles, database: ThrowawayDatabase
) -> None:
    sections = {
        "server": {"workers": 2},
        "storage": {"backend": "postgresql", "dsn": database.dsn},
    }
    first = start_node(
        tmp_path / "a", tls_files, sections=sections, pop3=POP3, kinds=frozenset({"pop3"})
    )
    second = start_node(
        tmp_path / "b",
        tls_files,
        sections=sections,
        pop3=POP3,
        kinds=frozenset({"pop3"}),
        provisioned=True,
    )
    try:
        for node in (first, second):
            for _ in range(4):  # both workers of each node have read alice's record
                assert login_reply(node).startswith(b"+OK")
        user_command(second, "disable", "alice", "--reason", "moved to another team")
        every_login(first, b"-ERR [SYS/PERM]")
        assert b"moved to another team" in login_reply(first)
        user_command(second, "enable", "alice")
        every_login(first, b"+OK")
    finally:
        for node in (first, second):
            node.process.close()
