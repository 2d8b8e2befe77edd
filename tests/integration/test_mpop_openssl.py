"""mpop and openssl s_client against popbox.

mpop delivers into a Maildir with LF line ends; without its Received header the file
is the delivered message with CRLF → LF.  Its "only new" mode remembers UIDLs, so a
second keep run must download nothing.  openssl s_client drives a session by hand after
``-starttls pop3``, verifying the certificate against the test CA.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

from pop3_clients import MESSAGES, assert_mailbox, require
from popbox_servers import USERS

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.clients


def mpop(server, work: Path, *, implicit_tls: bool, keep: bool) -> str:
    """One mpop run for alice into ``work/maildir``; fails the test unless it exits 0."""
    maildir = work / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    port = server.tls_port if implicit_tls else server.port
    result = subprocess.run(
        [
            require("mpop"),
            f"--host={server.host}",
            f"--port={port}",
            "--timeout=20",
            "--tls=on",
            f"--tls-starttls={'off' if implicit_tls else 'on'}",
            f"--tls-trust-file={server.tls.ca_file}",
            "--tls-host-override=localhost",
            "--auth=user",
            "--user=alice",
            f"--passwordeval=echo '{USERS['alice']}'",
            f"--delivery=maildir,{maildir}",
            f"--keep={'on' if keep else 'off'}",
            "--only-new=on",
            f"--uidls-file={work / 'uidls'}",
            "--received-header=off",
        ],
        env={"HOME": str(work / "home"), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    log = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, log
    return log


def maildir_messages(work: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in (work / "maildir" / "new").iterdir())


def as_lf(texts: list[bytes]) -> list[bytes]:
    return sorted(text.replace(b"\r\n", b"\n") for text in texts)


def test_mpop_keep_runs_over_stls_download_only_new_mail(pop3_server, tmp_path):
    """mpop --keep --only-new: UIDLs (C0007) tell it what it already has."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    mpop(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert maildir_messages(tmp_path) == as_lf([d.text for d in delivered])

    mpop(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert len(maildir_messages(tmp_path)) == len(MESSAGES)

    [late] = pop3_server.deliver("alice", b"Subject: late\r\n\r\n.dot\r\nafter the first run\r\n")
    mpop(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert maildir_messages(tmp_path) == as_lf([d.text for d in [*delivered, late]])
    assert_mailbox(pop3_server, "alice", [*delivered, late])


def test_mpop_delete_run_over_implicit_tls_empties_the_maildrop(pop3_server, tmp_path):
    """Without --keep, mpop deletes what it retrieved, in UPDATE (V0006)."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    mpop(pop3_server, tmp_path, implicit_tls=True, keep=False)
    assert maildir_messages(tmp_path) == as_lf([d.text for d in delivered])
    assert pop3_server.uids("alice") == []


def test_openssl_s_client_starttls_session(pop3_server):
    """openssl s_client -starttls pop3: CAPA, USER, PASS, STAT and QUIT by hand."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    script = f"CAPA\r\nUSER alice\r\nPASS {USERS['alice']}\r\nSTAT\r\nQUIT\r\n"
    result = subprocess.run(
        [
            require("openssl"),
            "s_client",
            "-quiet",  # also -ign_eof: read until the server closes after QUIT
            "-starttls",
            "pop3",
            "-connect",
            f"{pop3_server.host}:{pop3_server.port}",
            "-CAfile",
            str(pop3_server.tls.ca_file),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ],
        input=script.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    lines = result.stdout.splitlines(keepends=True)
    assert lines[0] == b"+OK capability list follows\r\n"
    assert b"USER\r\n" in lines  # offered now that TLS is up (V0010)
    assert b"STLS\r\n" not in lines
    size = sum(d.info.size for d in delivered)
    assert lines[-4:] == [
        b"+OK send PASS\r\n",
        f"+OK logged in, {len(delivered)} messages ({size} octets)\r\n".encode(),
        f"+OK {len(delivered)} {size}\r\n".encode(),
        b"+OK signing off, 0 messages deleted\r\n",
    ]
