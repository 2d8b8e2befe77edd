"""What users see at the cut-over: their POP3 client downloads nothing again (C0009).

mpop (``--keep --only-new``) and fetchmail (``--uidl``, ``keep``) first collect a
mailbox from a real Dovecot and remember its UIDLs.  The mailbox is imported with
``popbox import pop3``; the clients' account is switched to popbox (same host name, the
new port, as a DNS change would); their next run downloads nothing; a message delivered
to popbox over LMTP is then the only one they download.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from typing import TYPE_CHECKING

import pytest

from dovecot_pop3 import DovecotPop3, corpus
from popbox_cli import popbox
from popbox_servers import USERS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from popbox_servers import InProcessServer, TlsFiles

pytestmark = pytest.mark.clients

MESSAGES = corpus(120)
NEW = b"From: late@example.org\r\nSubject: after the cut-over\r\n\r\nnew mail\r\n"


@pytest.fixture
def dovecot(tls_files: TlsFiles) -> Iterator[DovecotPop3]:
    server = DovecotPop3.start({"alice": (USERS["alice"], MESSAGES)}, tls_files)
    yield server
    server.stop()


def require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} is not installed (Debian package {binary})")
    return found


def mpop(port: int, ca: Path, work: Path) -> int:
    """One mpop run (STLS, keep, only new) for alice; how many messages it delivered."""
    maildir = work / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    before = len(list((maildir / "new").iterdir()))
    result = subprocess.run(
        [
            require("mpop"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--timeout=30",
            "--tls=on",
            "--tls-starttls=on",
            f"--tls-trust-file={ca}",
            "--tls-host-override=localhost",
            "--auth=user",
            "--user=alice",
            f"--passwordeval=echo '{USERS['alice']}'",
            f"--delivery=maildir,{maildir}",
            "--keep=on",
            "--only-new=on",
            f"--uidls-file={work / 'uidls'}",
            "--received-header=off",
        ],
        env={"HOME": str(work), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return len(list((maildir / "new").iterdir())) - before


def fetchmail(port: int, ca: Path, work: Path) -> int:
    """One fetchmail run (STLS, keep, --uidl) for alice; how many messages it handed over."""
    out = work / "out"
    out.mkdir(exist_ok=True)
    before = len(list(out.iterdir()))
    rcfile = work / "fetchmailrc"
    rcfile.write_text(
        f"poll 127.0.0.1 with proto POP3 port {port} timeout 30\n"
        f'  user "alice" there with password "{USERS["alice"]}" is "alice" here\n'
        f'  options keep no rewrite sslcertck sslcertfile "{ca}" sslcommonname "localhost"'
        ' sslproto "TLS1.2+"\n'
        f'  mda "cat > $(mktemp {out}/msg.XXXXXX)"\n',
        encoding="utf-8",
    )
    rcfile.chmod(0o600)
    result = subprocess.run(
        [
            require("fetchmail"),
            "--fetchmailrc",
            str(rcfile),
            "--nosyslog",
            "--invisible",
            "--pidfile",
            str(work / "fetchmail.pid"),
            "--uidl",
            "--idfile",
            str(work / "ids"),
        ],
        env={"HOME": str(work), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    # fetchmail exits 0 when it retrieved mail, 1 when there was none.
    assert result.returncode in {0, 1}, result.stdout + result.stderr
    return len(list(out.iterdir())) - before


def test_clients_switched_to_popbox_download_only_mail_that_is_new(
    dovecot: DovecotPop3,
    start_pop3_server: Callable[..., InProcessServer],
    tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    ca = tls_files.ca_file
    clients = {"mpop": mpop, "fetchmail": fetchmail}
    for name, client in clients.items():
        (tmp_path / name).mkdir()
        assert client(dovecot.port, ca, tmp_path / name) == len(MESSAGES), name

    target = start_pop3_server()
    done = popbox(
        target, "import", "pop3", "alice", dovecot.url(), "--cafile", str(ca),
        "--password-stdin", stdin=USERS["alice"] + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    for name, client in clients.items():
        assert client(target.port, ca, tmp_path / name) == 0, f"{name} downloaded mail again"

    lmtp = target.addresses["lmtp"][0]
    with smtplib.LMTP(lmtp[0], lmtp[1], timeout=30) as delivery:
        refused = delivery.sendmail("late@example.org", ["alice"], NEW)
    assert refused == {}
    for name, client in clients.items():
        assert client(target.port, ca, tmp_path / name) == 1, name
    delivered = [p.read_bytes() for p in (tmp_path / "mpop" / "maildir" / "new").iterdir()]
    assert sum(b"after the cut-over" in text for text in delivered) == 1
