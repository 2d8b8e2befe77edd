"""curl as a POP3 client: pop3:// upgraded with STLS (--ssl-reqd) and pop3s://.

curl verifies the server against the test CA (--cacert, never -k).  It prints LIST and
UIDL listings and RETR'd messages with their CRLF line ends and the byte-stuffing
undone, so its output is compared byte for byte with what was delivered.
"""

from __future__ import annotations

import subprocess

import pytest

from pop3_clients import MESSAGES, assert_mailbox, require
from popbox_servers import USERS

pytestmark = pytest.mark.clients

SCHEMES = ["stls", "implicit"]


def curl(server, path: str, *args: str, scheme: str) -> bytes:
    """Run curl against ``path`` of alice's maildrop; its stdout (fails on a curl error)."""
    if scheme == "stls":
        url, tls = f"pop3://{server.host}:{server.port}{path}", ["--ssl-reqd"]
    else:
        url, tls = f"pop3s://{server.host}:{server.tls_port}{path}", []
    command = [require("curl"), "--silent", "--show-error", "--max-time", "20"]
    command += [*tls, "--cacert", str(server.tls.ca_file), "--user", f"alice:{USERS['alice']}"]
    result = subprocess.run([*command, *args, url], capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.mark.parametrize("scheme", SCHEMES)
def test_curl_list_and_uidl_match_the_maildrop(pop3_server, scheme):
    """RFC 1939 s5/s7: LIST gives "n size", UIDL "n unique-id", one line per message."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    listing = curl(pop3_server, "/", scheme=scheme)
    assert listing == b"".join(
        f"{n} {d.info.size}\r\n".encode() for n, d in enumerate(delivered, 1)
    )
    uidls = curl(pop3_server, "/", "--request", "UIDL", scheme=scheme)
    assert uidls == b"".join(f"{n} {d.info.uidl}\r\n".encode() for n, d in enumerate(delivered, 1))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_curl_retr_gives_every_message_byte_for_byte(pop3_server, scheme):
    """RETR through curl: dot-stuffed lines, 8-bit octets and LF-only input all round-trip."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    for n, d in enumerate(delivered, 1):
        assert curl(pop3_server, f"/{n}", scheme=scheme) == d.text
    assert_mailbox(pop3_server, "alice", delivered)  # RETR alone removes nothing


@pytest.mark.parametrize("scheme", SCHEMES)
def test_curl_dele_removes_that_message_only(pop3_server, scheme):
    """DELE then curl's QUIT: exactly the marked message is gone (V0006)."""
    delivered = pop3_server.deliver("alice", *MESSAGES[:3])
    # -I: DELE has a one-line answer, so curl must not wait for a listing.
    curl(pop3_server, "/", "--request", "DELE 2", "--head", scheme=scheme)
    assert_mailbox(pop3_server, "alice", [delivered[0], delivered[2]])
    curl(pop3_server, "/1", "--request", "DELE", "--head", scheme=scheme)
    assert_mailbox(pop3_server, "alice", [delivered[2]])


def test_curl_retr_of_a_missing_message_fails_without_damage(pop3_server):
    """A -ERR for a message that does not exist is an error for curl, not a hang."""
    delivered = pop3_server.deliver("alice", MESSAGES[0])
    result = subprocess.run(
        [
            require("curl"),
            "--silent",
            "--max-time",
            "20",
            "--cacert",
            str(pop3_server.tls.ca_file),
            "--user",
            f"alice:{USERS['alice']}",
            f"pop3s://{pop3_server.host}:{pop3_server.tls_port}/9",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert result.returncode != 28  # 28 would be curl's timeout
    assert_mailbox(pop3_server, "alice", delivered)
