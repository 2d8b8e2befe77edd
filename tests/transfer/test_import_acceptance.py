"""Acceptance: big imports keep every UIDL, checked over POP3 against the source (C0009).

* A 10,000-message mbox with X-UIDL headers, imported with ``popbox import --keep-uidl``:
  the UIDL listing popbox serves afterwards is the source's, message for message, and a
  message delivered afterwards gets a decimal unique-id above all of them.
* A Maildir served first by a real Dovecot (Debian ``dovecot-pop3d``), which writes its
  ``dovecot-uidlist`` as it answers UIDL: imported with ``--keep-uidl``, popbox's UIDL
  listing is exactly the one Dovecot gave.
"""

from __future__ import annotations

import os
import poplib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "delivery"))
from mailserver import PASSWORD, MailServer, lmtp_transaction

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 60
MAIL_UID = 65534  # Dovecot's mail processes must not run as root: "nobody"


def popbox_command() -> str:
    beside = Path(sys.executable).parent / "popbox"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("popbox")
    assert found, "the popbox command is not installed: run scripts/setup"
    return found


def import_cli(server: MailServer, *args: str) -> subprocess.CompletedProcess[str]:
    config = server.config.data_dir / "popbox.toml"
    config.write_text(f'data_dir = "{server.config.data_dir}"\n')
    return subprocess.run(
        [popbox_command(), "import", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def uidl_listing(host: str, port: int, user: str, password: str) -> list[str]:
    client = poplib.POP3(host, port, timeout=30)
    try:
        client.user(user)
        client.pass_(password)
        _, lines, _ = client.uidl()
        return [line.decode("ascii").split(" ", 1)[1] for line in lines]
    finally:
        client.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path / "data")
    running.add_user("alice")
    yield running
    running.stop()


def test_10000_message_mbox_keeps_every_uidl_c0009(server: MailServer, tmp_path: Path) -> None:
    mbox = tmp_path / "big.mbox"
    source_uidls = [f"{n * 3 + 1000}" if n % 2 else f"legacy-{n:05d}" for n in range(10_000)]
    with mbox.open("wb") as handle:
        for n, uidl in enumerate(source_uidls):
            handle.write(b"From sender@example.org Sat Jan  3 01:05:34 2026\n")
            handle.write(f"Subject: message {n}\nX-UIDL: {uidl}\n\nbody {n}\n".encode())
            handle.write(b">From quoted\n\n")
    done = import_cli(server, "mbox", "alice", str(mbox), "--keep-uidl")
    assert done.returncode == 0, done.stderr
    assert "imported 10000 of 10000 messages" in done.stdout
    assert "kept their old unique-id: 10000" in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal

    listing = uidl_listing("127.0.0.1", server.port("pop3"), "alice", PASSWORD)
    assert listing == source_uidls
    # C0007/C0008: the next delivery continues above every numeric unique-id seen.
    lmtp_transaction(("127.0.0.1", server.port("lmtp")), ["alice"], b"Subject: new\r\n\r\n")
    newest = uidl_listing("127.0.0.1", server.port("pop3"), "alice", PASSWORD)[-1]
    assert int(newest) > max(int(u) for u in source_uidls if u.isdigit())

    again = import_cli(server, "mbox", "alice", str(mbox), "--keep-uidl")
    assert "imported 0 of 10000 messages" in again.stdout
    assert "already imported before, skipped: 10000" in again.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_maildir(maildir: Path, count: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n in range(count):
        text = f"Subject: dovecot {n}\nFrom: a@example.org\n\nbody {n}\n".encode()
        # Older ones read (cur/ with S), the newest unread in new/, as a real mailbox.
        if n < count - 3:
            name = f"{1_700_000_000 + n}.M{n}P1.test,S={len(text)}:2,{'S' if n % 2 else ''}"
            path = maildir / "cur" / name
        else:
            path = maildir / "new" / f"{1_700_000_000 + n}.M{n}P1.test,S={len(text)}"
        path.write_bytes(text)


@pytest.fixture
def dovecot_maildir() -> Iterator[tuple[Path, list[str]]]:
    """A Maildir and the UIDL listing a real Dovecot serves for it (module docs)."""
    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(dovecot).exists() or os.geteuid() != 0:
        pytest.skip("needs Debian's dovecot-pop3d and root (Dovecot's master starts as root)")
    # Not under pytest's tmp_path: that is private to root, and Dovecot's mail and
    # login processes run as other users.
    root = Path(tempfile.mkdtemp(prefix="popbox-dovecot-"))
    root.chmod(0o755)
    try:
        maildir = root / "mail" / "alice" / "Maildir"
        _write_maildir(maildir, 40)
        for directory, _, files in os.walk(root / "mail"):
            os.chown(directory, MAIL_UID, MAIL_UID)
            for name in files:
                os.chown(Path(directory) / name, MAIL_UID, MAIL_UID)
        (root / "passwd").write_text(f"alice:{{PLAIN}}{PASSWORD}\n")
        port = _free_port()
        config = root / "dovecot.conf"
        config.write_text(_dovecot_config(root, port))
        process = subprocess.Popen(
            [dovecot, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            listing = _dovecot_uidls(port, process)
        finally:
            process.terminate()
            process.wait(TIMEOUT)
        assert (maildir / "dovecot-uidlist").is_file()
        yield maildir, listing
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _dovecot_config(root: Path, port: int) -> str:
    return f"""
instance_name = popbox-test-dovecot-{port}
base_dir = {root}/run
state_dir = {root}/state
protocols = pop3
listen = 127.0.0.1
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={root}/mail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


def _dovecot_uidls(port: int, process: subprocess.Popen[bytes]) -> list[str]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert process.poll() is None, "dovecot exited at start"
        try:
            return uidl_listing("127.0.0.1", port, "alice", PASSWORD)
        except OSError:
            assert time.monotonic() < deadline, "dovecot did not answer"
            time.sleep(0.1)


def test_dovecot_maildir_keeps_every_uidl_dovecot_served_c0009(
    server: MailServer, dovecot_maildir: tuple[Path, list[str]]
) -> None:
    maildir, dovecot_listing = dovecot_maildir
    assert len(dovecot_listing) == 40
    done = import_cli(server, "maildir", "alice", str(maildir), "--keep-uidl")
    assert done.returncode == 0, done.stderr
    assert "kept their old unique-id: 40" in done.stdout
    listing = uidl_listing("127.0.0.1", server.port("pop3"), "alice", PASSWORD)
    assert listing == dovecot_listing
