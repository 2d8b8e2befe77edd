"""popbox -> popbox, and a whole server at once with ``--users FILE`` (C0009, C0008).

The source is a real popbox over implicit TLS, whose unique-ids are its decimal uids:
kept as legacy UIDLs, they make the target raise its uid counter past them, so a message
delivered to the target afterwards cannot show an imported message's unique-id.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dovecot_pop3 import corpus, raw_listing
from popbox_cli import popbox
from popbox_servers import USERS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from popbox_servers import InProcessServer, TlsFiles


def source_server(start: Callable[..., InProcessServer]) -> InProcessServer:
    server = start()
    server.deliver("alice", *corpus(30))
    server.deliver("bob", *corpus(5))
    return server


def users_file(tmp_path: Path, bob_password: str) -> Path:
    secret = tmp_path / "bob.secret"
    secret.write_text(bob_password + "\n")
    users = tmp_path / "users.csv"
    users.write_text(
        f'name,login,password,password_file\nalice,alice,"{USERS["alice"]}",\nbob,,,{secret}\n'
    )
    return users


def test_whole_popbox_server_moves_to_another_keeping_every_uidl(
    start_pop3_server: Callable[..., InProcessServer], tls_files: TlsFiles, tmp_path: Path
) -> None:
    source = source_server(start_pop3_server)
    target = start_pop3_server()
    report = tmp_path / "report.json"
    done = popbox(
        target, "import", "pop3", "--users", str(users_file(tmp_path, USERS["bob"])),
        f"pop3s://localhost:{source.tls_port}", "--cafile", str(tls_files.ca_file),
        "--concurrency", "2", "--rate", "50", "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alice: complete: 30 of 30 messages" in done.stdout
    assert "bob: complete: 5 of 5 messages" in done.stdout
    assert "2 of 2 users complete; 35 messages" in done.stdout
    written = json.loads(report.read_text())
    assert written["complete"] is True
    assert [(u["name"], u["imported"]) for u in written["users"]] == [("alice", 30), ("bob", 5)]

    for user in ("alice", "bob"):
        before = raw_listing(source.tls_port, user, USERS[user], tls_files.ca_file)
        after = raw_listing(target.tls_port, user, USERS[user], tls_files.ca_file)
        assert after == before, user
    highest = max(int(line.split()[1]) for line in before["uidl"])
    (later,) = target.deliver("bob", b"Subject: later\r\n\r\nnew\r\n")
    assert later.info.uid > highest  # C0008: above every imported numeric unique-id


def test_one_users_failure_is_its_own_line_and_the_exit_status(
    start_pop3_server: Callable[..., InProcessServer], tls_files: TlsFiles, tmp_path: Path
) -> None:
    source = source_server(start_pop3_server)
    target = start_pop3_server()
    done = popbox(
        target, "import", "pop3", "--users", str(users_file(tmp_path, "wrong password")),
        f"pop3s://localhost:{source.tls_port}", "--cafile", str(tls_files.ca_file),
    )  # fmt: skip
    assert done.returncode == 1
    assert "alice: complete: 30 of 30 messages" in done.stdout
    assert "bob: FAILED: login as bob refused" in done.stdout
    assert "1 of 2 users complete" in done.stdout
    assert len(target.call(target.store.snapshot("alice"))) == 30
