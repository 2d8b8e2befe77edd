"""swaks, a real SMTP/LMTP client, delivering to popbox over LMTP (TCP and unix socket)."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from mailserver import MailServer, pop3_retrieve, split_trace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed"),
]

MESSAGE = b"From: swaks@example.org\r\nSubject: from swaks\r\n\r\nhello over LMTP\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    socket_path = tmp_path / "lmtp.sock"
    running = MailServer(tmp_path / "data", lmtp={"listen": ["127.0.0.1:0", f"unix:{socket_path}"]})
    running.add_user("alice")
    running.add_user("bob")
    yield running
    running.stop()


def swaks(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--protocol", "LMTP", "--from", "swaks@example.org", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_swaks_delivers_over_tcp_with_a_reply_per_recipient_rfc2033(
    server: MailServer, tmp_path: Path
) -> None:
    data = tmp_path / "message.eml"
    data.write_bytes(MESSAGE.removesuffix(b"\r\n"))  # swaks ends the data with its own CRLF
    done = swaks(
        "--server",
        f"127.0.0.1:{server.port('lmtp')}",
        "--to",
        "alice@example.com,nobody@example.com,bob@example.com",
        data=data,
    )
    assert "550 5.1.1 <nobody@example.com>: no such mailbox here" in done.stdout
    assert "250 2.1.5 <alice@example.com> delivered as message 1" in done.stdout
    assert "250 2.1.5 <bob@example.com> delivered as message 1" in done.stdout
    for name in ("alice", "bob"):
        [fetched] = pop3_retrieve(server, name)
        assert split_trace(fetched)[1] == MESSAGE


def test_swaks_delivers_over_the_unix_socket(server: MailServer, tmp_path: Path) -> None:
    data = tmp_path / "message.eml"
    data.write_bytes(MESSAGE.removesuffix(b"\r\n"))  # swaks ends the data with its own CRLF
    [(path, _)] = [a for a in server.addresses["lmtp"] if a[0].startswith("unix:")]
    done = swaks("--socket", path.removeprefix("unix:"), "--to", "alice", data=data)
    assert done.returncode == 0, done.stdout + done.stderr
    [fetched] = pop3_retrieve(server, "alice")
    assert split_trace(fetched)[1] == MESSAGE
