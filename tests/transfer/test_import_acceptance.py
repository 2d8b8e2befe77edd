"""Acceptance: big imports keep every UIDL, checked over POP3 against the source (C0009).

* A 10,000-message mbox with X-UIDL headers, imported with ``popbox import --keep-uidl``:
  the UIDL listing popbox serves afterwards is the source's, message for message, and a
  message delivered afterwards gets a decimal unique-id above all of them.
* A Maildir served first by a real Dovecot (Debian ``dovecot-pop3d``), which writes its
  ``dovecot-uidlist`` as it answers UIDL: imported with ``--keep-uidl``, popbox's UIDL
  listing is exactly the one Dovecot gave.
"""

from __future__ import annotations

import poplib
import subprocess
from typing import TYPE_CHECKING

import pytest

from dovecot_pop3 import DovecotPop3, raw_listing
from mailserver import PASSWORD, MailServer, lmtp_transaction
from popbox_cli import popbox_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from popbox_servers import TlsFiles

TIMEOUT = 60


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


@pytest.fixture
def dovecot_maildir(tls_files: TlsFiles) -> Iterator[tuple[Path, list[str]]]:
    """A Maildir and the UIDL listing a real Dovecot serves for it (module docs).

    The three newest messages wait in ``new/``, unread, as in a real mailbox.
    """
    texts = [f"Subject: dovecot {n}\nFrom: a@example.org\n\nbody {n}\n".encode() for n in range(40)]
    # Dovecot's default unique-ids: the ones a Maildir import rebuilds from dovecot-uidlist.
    users = {"alice": (PASSWORD, texts)}
    dovecot = DovecotPop3.start(users, tls_files, unread=3, uidl_format="%08Xu%08Xv")
    try:
        listing = raw_listing(dovecot.tls_port, "alice", PASSWORD, tls_files.ca_file)["uidl"]
        maildir = dovecot.maildir("alice")
        assert (maildir / "dovecot-uidlist").is_file()
        yield maildir, [line.split(b" ", 1)[1].decode("ascii") for line in listing]
    finally:
        dovecot.stop()


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
