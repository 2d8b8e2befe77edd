"""A real Postfix relays mail into popbox over LMTP; a POP3 client gets it byte for byte.

The test runs Debian's Postfix from a configuration directory of its own (queue, data
and sockets in the test's temporary directory, SMTP on an ephemeral 127.0.0.1 port,
no chroot), so the machine's own Postfix, if any, is never touched.  Postfix must be
started as root, which CI is; elsewhere the test is skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailserver import MailServer, pop3_retrieve, split_trace

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(
    shutil.which("postfix") is None or os.geteuid() != 0,
    reason="needs Debian's postfix and root (Postfix's master must start as root)",
)

TIMEOUT = 30.0
MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: relayed by Postfix\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <postfix-test-1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b".this line starts with a dot\r\n"
    b"From here on, a line that mbox would quote\r\n"
    b"\xc3\xa4\xc3\xb6\xc3\xbc 8-bit text\r\n"
    b"\r\n"
)

MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postfix(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["postfix", "-c", str(config_dir), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture
def popbox(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path / "popbox")
    running.add_user("alice")
    yield running
    running.stop()


@pytest.fixture
def postfix_smtp(popbox: MailServer) -> Iterator[int]:
    """A Postfix whose virtual domain example.test goes to popbox over LMTP."""
    # Not under tmp_path: pytest makes its temporary directories private to root, and
    # Postfix's daemons run as the postfix user and must reach their queue.
    config_dir = Path(tempfile.mkdtemp(prefix="popbox-postfix-"))
    config_dir.chmod(0o755)
    (config_dir / "queue").mkdir()
    (config_dir / "data").mkdir()
    shutil.chown(config_dir / "data", "postfix")
    smtp_port = free_port()
    (config_dir / "main.cf").write_text(
        "\n".join(
            [
                "compatibility_level = 3.6",
                f"queue_directory = {config_dir}/queue",
                f"data_directory = {config_dir}/data",
                "mail_owner = postfix",
                "setgid_group = postdrop",
                "myhostname = relay.test",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject",
                "alias_maps =",
                "alias_database =",
                "virtual_mailbox_domains = example.test",
                "virtual_mailbox_maps = inline:{ alice@example.test=ok }",
                f"virtual_transport = lmtp:inet:127.0.0.1:{popbox.port('lmtp')}",
                f"maillog_file = {config_dir}/maillog",
                f"maillog_file_prefixes = {config_dir}",
                "smtputf8_enable = yes",
                "",
            ]
        )
    )
    (config_dir / "master.cf").write_text(MASTER_CF.format(smtp_port=smtp_port))
    started = postfix(config_dir, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        _wait_for_port(smtp_port)
        yield smtp_port
    finally:
        postfix(config_dir, "stop")
        log = config_dir / "maillog"
        # Captured by pytest and shown when the test fails.
        sys.stderr.write(log.read_text() if log.exists() else "no Postfix log\n")
        shutil.rmtree(config_dir, ignore_errors=True)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"Postfix is not listening on {port}")


def _wait_for_mail(server: MailServer, name: str, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(server.call(server.store.snapshot(name))) < count:
        assert time.monotonic() < deadline, "Postfix did not deliver over LMTP in time"
        time.sleep(0.05)


def test_postfix_relays_over_lmtp_and_pop3_gets_it_byte_for_byte(
    popbox: MailServer, postfix_smtp: int
) -> None:
    """DESIGN section 6 acceptance: Postfix -> LMTP -> popbox -> POP3 client.

    Only trace fields are added in front (popbox's Return-Path, Delivered-To and
    Received, then Postfix's Received); the original header and body follow unchanged.
    """
    with smtplib.SMTP("127.0.0.1", postfix_smtp, timeout=TIMEOUT) as client:
        refused = client.sendmail(
            "sender@example.org", ["alice@example.test"], MESSAGE, mail_options=["BODY=8BITMIME"]
        )
    assert refused == {}
    _wait_for_mail(popbox, "alice", 1)
    [fetched] = pop3_retrieve(popbox, "alice")
    trace, rest = split_trace(fetched)
    assert trace[0] == b"Return-Path: <sender@example.org>"
    assert trace[1] == b"Delivered-To: alice@example.test"
    # Postfix's own Received field (with its folded lines) comes next, then the original.
    lines = rest.split(b"\r\n")
    assert lines[0].startswith(b"Received: from ")
    end = 1
    while lines[end].startswith((b" ", b"\t")):
        end += 1
    assert b"(Postfix)" in b"\r\n".join(lines[:end])
    assert b"\r\n".join(lines[end:]) == MESSAGE
