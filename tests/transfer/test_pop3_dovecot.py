"""``popbox import pop3`` from a real Dovecot: every UIDL kept byte for byte (C0009).

Dovecot (``dovecot_pop3``) serves the issue's 1,000 messages with dot-lines, 8-bit
bodies and long lines plus one of 5 MiB, under a non-numeric ``pop3_uidl_format``.
After the import, popbox answers UIDL, LIST and every RETR with exactly Dovecot's
octets; ``popbox verify pop3`` agrees; a second run imports nothing.  (The switch of
POP3 clients from Dovecot to popbox is ``test_pop3_clients_switch``.)  The import of
all 1,001 takes a few seconds, even on a loaded machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dovecot_pop3 import MASTER, MASTER_PASSWORD, DovecotPop3, big_message, corpus, raw_listing
from popbox_cli import popbox
from popbox_servers import USERS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from popbox_servers import InProcessServer, TlsFiles

ALICE = [*corpus(500), big_message(5 * 1024 * 1024), *corpus(500)]


@pytest.fixture(scope="module")
def dovecot(tls_files: TlsFiles) -> Iterator[DovecotPop3]:
    users = {"alice": (USERS["alice"], ALICE), "bob": (USERS["bob"], corpus(7))}
    server = DovecotPop3.start(users, tls_files)
    yield server
    server.stop()


@pytest.fixture
def target(start_pop3_server: Callable[..., InProcessServer]) -> InProcessServer:
    return start_pop3_server()


def import_alice(target: InProcessServer, dovecot: DovecotPop3, ca: Path, *extra: str):
    return popbox(
        target,
        "import",
        "pop3",
        "alice",
        dovecot.url(),
        "--cafile",
        str(ca),
        "--password-stdin",
        *extra,
        stdin=USERS["alice"] + "\n",
    )


def test_import_serves_dovecots_uidl_list_and_retr_octet_for_octet_c0009(
    dovecot: DovecotPop3, target: InProcessServer, tls_files: TlsFiles
) -> None:
    ca = tls_files.ca_file
    before = raw_listing(dovecot.tls_port, "alice", USERS["alice"], ca)
    assert len(before["uidl"]) == len(ALICE)
    assert not before["uidl"][0].split(b" ", 1)[1].isdigit()  # %08Xv%08Xu: not a number

    done = import_alice(target, dovecot, ca)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"imported {len(ALICE)} of {len(ALICE)} messages" in done.stdout
    assert f"kept their source unique-id: {len(ALICE)}" in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal

    served = raw_listing(target.tls_port, "alice", USERS["alice"], ca)
    assert served["uidl"] == before["uidl"]  # C0009: the same unique-ids, the same order
    assert served["list"] == before["list"]  # exact sizes (RFC 1939 s5 LIST)
    assert served["retr"] == before["retr"]  # dot-lines, 8-bit, long lines, 5 MiB
    # Read-only at the source: Dovecot still holds every message.
    assert raw_listing(dovecot.tls_port, "alice", USERS["alice"], ca)["uidl"] == before["uidl"]

    verified = popbox(
        target, "verify", "pop3", "alice", dovecot.url(), "--cafile", str(ca),
        "--password-stdin", "--exact-sizes", stdin=USERS["alice"] + "\n",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "the same unique-ids" in verified.stdout

    again = import_alice(target, dovecot, ca)
    assert again.returncode == 0, again.stderr
    assert f"imported 0 of {len(ALICE)} messages" in again.stdout
    assert f"already imported before, skipped: {len(ALICE)}" in again.stdout


def test_verify_shows_the_diff_and_fails_on_a_missing_uidl(
    dovecot: DovecotPop3, target: InProcessServer, tls_files: TlsFiles
) -> None:
    ca = tls_files.ca_file
    done = popbox(
        target, "import", "pop3", "bob", dovecot.url(implicit_tls=False), "--cafile", str(ca),
        "--password-stdin", stdin=USERS["bob"] + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    first = target.call(target.store.snapshot("bob"))[0]
    target.call(target.store.delete("bob", [first.uid]))
    verified = popbox(
        target, "verify", "pop3", "bob", dovecot.url(), "--cafile", str(ca), "--password-stdin",
        stdin=USERS["bob"] + "\n",
    )  # fmt: skip
    assert verified.returncode == 1
    assert f"- {first.uidl} (source message 1)" in verified.stdout
    assert "DIFFERENT" in verified.stdout


@pytest.mark.parametrize("auth", ["user", "plain"])
def test_master_user_login_imports_the_users_mailbox(
    dovecot: DovecotPop3, target: InProcessServer, tls_files: TlsFiles, auth: str, tmp_path: Path
) -> None:
    """Dovecot's bob*admin USER form and SASL PLAIN with authorization identity bob."""
    secret = tmp_path / "master-password"
    secret.write_text(MASTER_PASSWORD + "\n")
    done = popbox(
        target, "import", "pop3", "bob", dovecot.url(implicit_tls=False), "--cafile",
        str(tls_files.ca_file), "--master-user", MASTER, "--password-file", str(secret),
        "--auth", auth,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    source = raw_listing(dovecot.tls_port, "bob", USERS["bob"], tls_files.ca_file)
    served = raw_listing(target.tls_port, "bob", USERS["bob"], tls_files.ca_file)
    assert served["uidl"] == source["uidl"]
    assert len(served["uidl"]) == 7


def test_users_file_through_a_master_user_uses_its_one_password(
    dovecot: DovecotPop3, target: InProcessServer, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """Dovecot's master user logs in to every listed mailbox with the master's password."""
    users = tmp_path / "users.csv"
    users.write_text("name,login\nbob,\n")
    done = popbox(
        target, "import", "pop3", "--users", str(users), dovecot.url(), "--cafile",
        str(tls_files.ca_file), "--master-user", MASTER, "--password-stdin",
        stdin=MASTER_PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bob: complete: 7 of 7 messages" in done.stdout
    source = raw_listing(dovecot.tls_port, "bob", USERS["bob"], tls_files.ca_file)
    served = raw_listing(target.tls_port, "bob", USERS["bob"], tls_files.ca_file)
    assert served["uidl"] == source["uidl"]

    users.write_text(f"name,login,password\nbob,,{USERS['bob']}\n")
    refused = popbox(
        target, "import", "pop3", "--users", str(users), dovecot.url(), "--cafile",
        str(tls_files.ca_file), "--master-user", MASTER, "--password-stdin",
        stdin=MASTER_PASSWORD + "\n",
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        f"popbox: {users}:2: a master user logs in with one password for every user:"
        " give it with --password-stdin or --password-file, not in the file\n"
    )


def test_bad_input_gets_one_line_naming_the_problem(
    dovecot: DovecotPop3, target: InProcessServer, tls_files: TlsFiles
) -> None:
    ca = str(tls_files.ca_file)
    wrong = popbox(
        target, "import", "pop3", "alice", dovecot.url(), "--cafile", ca, "--password-stdin",
        stdin="not the password\n",
    )  # fmt: skip
    untrusted = popbox(
        target, "import", "pop3", "alice", dovecot.url(), "--password-stdin",
        stdin=USERS["alice"] + "\n",
    )  # fmt: skip
    closed = popbox(
        target, "import", "pop3", "alice", "pop3s://127.0.0.1:1", "--password-stdin",
        stdin=USERS["alice"] + "\n",
    )  # fmt: skip
    bad_url = popbox(target, "import", "pop3", "alice", "imap://x", "--password-stdin", stdin="p\n")
    for result, text in [
        (wrong, "login as alice refused"),
        (untrusted, "TLS with localhost port"),
        (closed, "cannot reach 127.0.0.1 port 1"),
        (bad_url, "not a pop3:// or pop3s:// URL"),
    ]:
        assert result.returncode == 1
        assert text in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr  # no traceback
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert target.call(target.store.snapshot("alice")) == []
