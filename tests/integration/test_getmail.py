"""getmail6 against popbox over implicit TLS (its POP3 retrievers have no STLS).

getmail hands each message to an external MDA with LF line ends and, with its Received
and Delivered-To headers switched off, only a ``Return-Path`` line in front (POP3 has no
envelope sender).  ``read_all = false`` makes it remember UIDLs between runs.
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

RETURN_PATH = b"Return-Path: <unknown>\n"


def getmail(server, work: Path, *, delete: bool) -> str:
    """One getmail run for alice; fails the test unless it exits 0."""
    out, state = work / "out", work / "state"
    out.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    rcfile = work / "getmailrc"
    rcfile.write_text(
        f"""\
[retriever]
type = SimplePOP3SSLRetriever
server = {server.host}
port = {server.tls_port}
username = alice
password = {USERS["alice"]}
ca_certs = {server.tls.ca_file}
ssl_cert_hostname = localhost

[destination]
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat > $(mktemp {out}/msg.XXXXXX)")
# getmail refuses to run an MDA as root unless told; harmless for other users.
allow_root_commands = true
unixfrom = false

[options]
read_all = false
delete = {str(delete).lower()}
received = false
delivered_to = false
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [require("getmail"), "--getmaildir", str(state), "--rcfile", str(rcfile)],
        env={"HOME": str(work), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    log = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, log
    return log


def downloaded(work: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in (work / "out").iterdir())


def expected(texts: list[bytes]) -> list[bytes]:
    return sorted(RETURN_PATH + text.replace(b"\r\n", b"\n") for text in texts)


def test_getmail_remembers_what_it_read_then_deletes(pop3_server, tmp_path):
    """read_all = false: UIDLs (C0007) keep a later run from downloading anything twice."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    getmail(pop3_server, tmp_path, delete=False)
    assert downloaded(tmp_path) == expected([d.text for d in delivered])
    getmail(pop3_server, tmp_path, delete=False)
    assert len(downloaded(tmp_path)) == len(MESSAGES)
    assert_mailbox(pop3_server, "alice", delivered)

    [late] = pop3_server.deliver("alice", b"Subject: late\r\n\r\nafter the first run\r\n")
    getmail(pop3_server, tmp_path, delete=True)
    assert downloaded(tmp_path) == expected([d.text for d in [*delivered, late]])
    # getmail's delete also removes the messages it had already seen on earlier runs.
    assert pop3_server.uids("alice") == []
