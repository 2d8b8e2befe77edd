"""fetchmail against popbox: keep and delete runs, UIDL bookkeeping, STLS and implicit TLS.

fetchmail hands each message to an MDA on stdin with LF line ends (its default for
MDAs); ``--invisible`` and ``no rewrite`` keep it from adding a Received header or
rewriting addresses, so what the MDA writes is the delivered message with CRLF → LF.
The certificate is checked against the test CA (``sslcertck``).
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

EXIT_MAIL = 0  # fetchmail: one or more messages were retrieved
EXIT_NO_MAIL = 1  # fetchmail: there was no (new) mail


def fetchmail(server, work: Path, *, implicit_tls: bool, keep: bool) -> tuple[int, str]:
    """One fetchmail run for alice with UIDL tracking (-U); exit status and its log."""
    out = work / "out"
    out.mkdir(exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    port = server.tls_port if implicit_tls else server.port
    options = [
        "keep" if keep else "no keep",
        "no rewrite",
        "sslcertck",
        f'sslcertfile "{server.tls.ca_file}"',
        'sslcommonname "localhost"',  # the certificate names localhost; we dial 127.0.0.1
        'sslproto "TLS1.2+"',  # without "ssl": STLS, required
        *(["ssl"] if implicit_tls else []),
    ]
    rcfile = work / "fetchmailrc"
    rcfile.write_text(
        f"poll {server.host} with proto POP3 port {port} timeout 20\n"
        f'  user "alice" there with password "{USERS["alice"]}" is "alice" here\n'
        f"  options {' '.join(options)}\n"
        f'  mda "cat > $(mktemp {out}/msg.XXXXXX)"\n',
        encoding="utf-8",
    )
    rcfile.chmod(0o600)  # fetchmail refuses a readable rcfile: it holds a password
    command = [require("fetchmail"), "--fetchmailrc", str(rcfile), "--nosyslog", "--invisible"]
    # --pidfile: as root fetchmail would lock a file in /var/run shared by concurrent runs.
    command += ["--pidfile", str(work / "fetchmail.pid"), "--verbose"]
    result = subprocess.run(
        [*command, "--uidl", "--idfile", str(work / "fetchids")],
        env={"HOME": str(work / "home"), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout.decode(errors="replace") + result.stderr.decode(
        errors="replace"
    )


def downloaded(work: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in (work / "out").iterdir())


def as_lf(texts: list[bytes]) -> list[bytes]:
    return sorted(text.replace(b"\r\n", b"\n") for text in texts)


def test_fetchmail_keep_runs_over_stls_download_only_new_mail(pop3_server, tmp_path):
    """Keep mode with --uidl: a second run downloads nothing; later mail is fetched alone."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    status, log = fetchmail(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert status == EXIT_MAIL, log
    assert "POP3> STLS" in log
    assert downloaded(tmp_path) == as_lf([d.text for d in delivered])

    status, log = fetchmail(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert status == EXIT_NO_MAIL, log
    assert len(downloaded(tmp_path)) == len(MESSAGES)

    [late] = pop3_server.deliver("alice", b"Subject: late\r\n\r\nafter the first run\r\n")
    status, log = fetchmail(pop3_server, tmp_path, implicit_tls=False, keep=True)
    assert status == EXIT_MAIL, log
    assert downloaded(tmp_path) == as_lf([d.text for d in [*delivered, late]])
    assert_mailbox(pop3_server, "alice", [*delivered, late])  # kept on the server


def test_fetchmail_delete_run_over_implicit_tls_empties_the_maildrop(pop3_server, tmp_path):
    """Without keep, fetchmail deletes what it retrieved, and only that (V0006)."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    status, log = fetchmail(pop3_server, tmp_path, implicit_tls=True, keep=False)
    assert status == EXIT_MAIL, log
    assert downloaded(tmp_path) == as_lf([d.text for d in delivered])
    assert pop3_server.uids("alice") == []
    status, log = fetchmail(pop3_server, tmp_path, implicit_tls=True, keep=False)
    assert status == EXIT_NO_MAIL, log
