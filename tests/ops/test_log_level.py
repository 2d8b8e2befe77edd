"""`server.log_level`: what a session writes to the log at info (the default) and debug.

At info a session logs connect, login and a disconnect line that sums it up (commands,
octets in and out), as Dovecot does; debug adds one ``command`` line per command with
the verb and its outcome.  Neither ever carries a password or a message body.
"""

from __future__ import annotations

import subprocess

import pytest

from ops_helpers import start_node
from popbox_servers import USERS, popbox_executable

MESSAGE = b"Subject: log level\r\n\r\nThe body says hello.\r\n"
# The exchange every test drives, byte for byte, and the verbs in it.
LINES = [
    b"USER alice",
    b"PASS " + USERS["alice"].encode(),
    b"STAT",
    b"RETR 1",
    b"RETR 99",
    b"QUIT",
]
VERBS = [("USER", True), ("PASS", True), ("STAT", True), ("RETR", True), ("RETR", False)]


def _session(node) -> tuple[int, int]:
    """Run LINES over a raw socket; the octets sent and received."""
    import socket  # noqa: PLC0415 - only this helper needs it

    sent = received = 0
    with socket.create_connection(("127.0.0.1", node.port()), timeout=10) as sock:
        reader = sock.makefile("rb")
        received += len(reader.readline())
        for line in LINES:
            sock.sendall(line + b"\r\n")
            sent += len(line) + 2
            reply = reader.readline()
            received += len(reply)
            if line == b"RETR 1":
                assert reply.startswith(b"+OK")
                while (body := reader.readline()) != b".\r\n":
                    received += len(body)
                received += len(body)
        assert reader.read() == b""  # QUIT closed the connection
    return sent, received


@pytest.fixture
def node_at(tmp_path, tls_files):
    nodes = []

    def start(level: str | None):
        server = {} if level is None else {"log_level": level}
        node = start_node(
            tmp_path / f"node-{level}",
            tls_files,
            sections={"server": server},
            pop3={"login_type": "plaintext_login"},
            messages={"alice": [MESSAGE]},
        )
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.process.close()


def test_info_logs_one_summary_line_per_session_not_one_per_command(node_at):
    node = node_at(None)
    sent, received = _session(node)
    (done,) = node.wait_for(lambda e: e.get("event") == "disconnect")
    assert done["commands"] == len(LINES)
    assert done["octets_in"] == sent
    assert done["octets_out"] == received
    assert done["user"] == "alice"
    assert not [e for e in node.events() if e.get("event") == "command"]
    assert USERS["alice"] not in node.process.stderr()  # V0011: never the password


def test_debug_adds_each_command_with_its_outcome(node_at):
    node = node_at("debug")
    _session(node)
    node.wait_for(lambda e: e.get("event") == "disconnect")
    commands = [e for e in node.events() if e.get("event") == "command"]
    assert [(e["verb"], e["ok"]) for e in commands] == [*VERBS, ("QUIT", True)]
    assert all(e["level"] == "debug" for e in commands)
    stderr = node.process.stderr()
    assert USERS["alice"] not in stderr
    assert "hello" not in stderr  # no message body either


def test_an_unknown_level_is_refused_naming_the_key(tmp_path):
    config = tmp_path / "popbox.toml"
    config.write_text('[server]\nlog_level = "loud"\n', encoding="utf-8")
    result = subprocess.run(
        [popbox_executable(), "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "server.log_level" in result.stderr
    assert "loud" in result.stderr
