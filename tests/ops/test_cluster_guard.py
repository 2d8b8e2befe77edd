"""Login defence and session limits count over every worker and every node.

An attacker who spreads password guesses over the worker processes of a node, and over
the nodes of a cluster, must meet the lockout at ``[auth] ip_lockout_failures`` in
total, not that many per process (RFC 2449 s8.1.2 LOGIN-DELAY; C0005).  Two nodes of
two workers each share a PostgreSQL database; a single SQLite node shares its
workers' scores through its supervisor.  ``[server] max_sessions_per_user`` holds
across nodes too (RFC 3206 SYS/TEMP for the refusal).  And an account disabled on one
node is refused at its next login on the other, although each process keeps the user
records its logins read (``postgres_accounts_copy``): the change is notified when it
commits.
"""

from __future__ import annotations

import contextlib
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
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from ops_helpers import Node
    from popbox_servers import TlsFiles

LOCKOUT = 4
POP3 = {"login_type": "plaintext_login", "auth_failure_delay": 0.0, "tls_listen": []}
AUTH = {"ip_lockout_failures": LOCKOUT, "user_lockout_failures": 0}


@pytest.fixture
def database() -> Iterator[ThrowawayDatabase]:
    made = ThrowawayDatabase(shared_server_dsn())
    try:
        yield made
    finally:
        made.drop()


def two_nodes(
    tmp_path: Path, tls_files: TlsFiles, sections: Mapping[str, object], pop3: Mapping[str, object]
) -> list[Node]:
    """Two POP3 nodes on the same configuration (its database), provisioned once."""
    return [
        start_node(
            tmp_path / name,
            tls_files,
            sections=sections,
            pop3=pop3,
            kinds=frozenset({"pop3"}),
            provisioned=name == "b",
        )
        for name in ("a", "b")
    ]


def connect(node: Node) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", node.port(), timeout=TIMEOUT)
    client.user("alice")
    return client


def login_reply(node: Node) -> bytes:
    """The reply to alice's right password on a new connection."""
    client = connect(node)
    try:
        reply = client.pass_(USERS["alice"])
        client.quit()
    except poplib.error_proto as exc:
        reply = exc.args[0]
    finally:
        client.close()
    return reply


def guess_on_each(clients: list[poplib.POP3]) -> None:
    """One wrong password on each connection: each is refused as a wrong password."""
    for client in clients:
        with pytest.raises(poplib.error_proto) as refused:
            client.pass_("wrong guess")
        assert refused.value.args[0].startswith(b"-ERR [AUTH]")


def spread_guesses(nodes: list[Node]) -> None:
    """LOCKOUT guesses, on connections held open together so that every worker gets some."""
    per_node = LOCKOUT // len(nodes)
    clients = [connect(node) for node in nodes for _ in range(per_node)]
    try:
        guess_on_each(clients[:-1])
        # One below the count in total: the right password still opens the maildrop.
        assert all(login_reply(node).startswith(b"+OK") for node in nodes)
        guess_on_each(clients[-1:])
    finally:
        for client in clients:
            client.close()


def test_guesses_over_two_nodes_of_two_workers_lock_out_at_the_count_in_total(
    tmp_path: Path, tls_files: TlsFiles, database: ThrowawayDatabase
) -> None:
    sections = {
        "server": {"workers": 2},
        "storage": {"backend": "postgresql", "dsn": database.dsn},
        "auth": AUTH,
    }
    # A failure is recorded before its delay and every node's copy of the lockouts
    # hears of it by NOTIFY within milliseconds: the delay (1 s by default) is what
    # has the lockout everywhere before the guesser gets its answer.  With none, the
    # next login could reach the other node first.
    pop3 = {**POP3, "auth_failure_delay": 0.1}
    first, second = two_nodes(tmp_path, tls_files, sections, pop3)
    try:
        spread_guesses([first, second])
        for node in (first, second):
            assert login_reply(node).startswith(b"-ERR [LOGIN-DELAY]")
    finally:
        for node in (first, second):
            node.process.close()


def test_guesses_over_two_workers_of_a_sqlite_node_lock_out_at_the_count_in_total(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    sections = {"server": {"workers": 2}, "auth": AUTH}
    node = start_node(tmp_path, tls_files, sections=sections, pop3=POP3, kinds=frozenset({"pop3"}))
    try:
        spread_guesses([node])
        assert login_reply(node).startswith(b"-ERR [LOGIN-DELAY]")
    finally:
        node.process.close()


def test_max_sessions_per_user_holds_across_nodes(
    tmp_path: Path, tls_files: TlsFiles, database: ThrowawayDatabase
) -> None:
    sections = {
        "server": {"workers": 1, "max_sessions_per_user": 2},
        "storage": {"backend": "postgresql", "dsn": database.dsn},
    }
    first, second = two_nodes(tmp_path, tls_files, sections, POP3)
    held = []
    try:
        for node in (first, second):
            client = connect(node)
            held.append(client)
            assert client.pass_(USERS["alice"]).startswith(b"+OK")
        for node in (first, second):  # one session on each node: two in all, the limit
            assert login_reply(node).startswith(b"-ERR [SYS/TEMP] too many sessions")
        held.pop().quit()
        deadline = time.monotonic() + TIMEOUT  # the slot is given back as the session ends
        while not login_reply(first).startswith(b"+OK"):
            assert time.monotonic() < deadline, "the freed session slot was not given back"
            time.sleep(0.05)
    finally:
        for client in held:
            with contextlib.suppress(OSError, poplib.error_proto):
                client.quit()
            client.close()
        for node in (first, second):
            node.process.close()


def user_command(node: Node, *args: str) -> None:
    done = subprocess.run(
        [popbox_command(), "user", *args, "--config", str(node.config_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def every_login_starts(node: Node, starts: bytes) -> None:
    """Logins until one starts with ``starts`` (within the bound), then four more that do:
    with two workers, each has heard."""
    deadline = time.monotonic() + TIMEOUT
    while not login_reply(node).startswith(starts):
        assert time.monotonic() < deadline, f"no login answered {starts!r} in time"
        time.sleep(0.05)
    assert all(login_reply(node).startswith(starts) for _ in range(4))


def test_an_account_disabled_on_one_node_is_refused_at_its_next_login_on_the_other(
    tmp_path: Path, tls_files: TlsFiles, database: ThrowawayDatabase
) -> None:
    sections = {
        "server": {"workers": 2},
        "storage": {"backend": "postgresql", "dsn": database.dsn},
    }
    first, second = two_nodes(tmp_path, tls_files, sections, POP3)
    try:
        for node in (first, second):
            for _ in range(4):  # both workers of each node have read alice's record
                assert login_reply(node).startswith(b"+OK")
        user_command(second, "disable", "alice", "--reason", "moved to another team")
        every_login_starts(first, b"-ERR [SYS/PERM]")  # RFC 3206 s4: not the password
        assert b"moved to another team" in login_reply(first)
        user_command(second, "enable", "alice")
        every_login_starts(first, b"+OK")
    finally:
        for node in (first, second):
            node.process.close()
