"""Real clients under every compat profile: each still collects the mail byte for byte.

The Exchange profiles list NTLM and GSSAPI first, as Exchange does; a client set up for
a password login is told so (curl ``AUTH=PLAIN``, fetchmail ``auth password``, mpop
``--auth=user``), as it would be against Exchange.  Estimated sizes (2.1.4, 2.1.5) are
on by default there, and mpop's ``--skipsize``, which trusts LIST, shows the difference.
"""

from __future__ import annotations

import poplib
import subprocess
from typing import TYPE_CHECKING

import pytest

from pop3_clients import MESSAGES, TIMEOUT, message_text, require
from popbox.protocol.maildrop import estimated_size
from popbox_servers import USERS

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.clients

PROFILES = ["modern", "rfc1939", "exchange2007", "exchange2010", "exchange2013", "exchange-online"]
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


@pytest.fixture(params=PROFILES)
def server(request, start_pop3_server):
    # exchange2007's 47-octet command limit (E0006) still fits every command these send.
    return start_pop3_server(sections={"compat": request.param})


def run(command: list[str], work: Path, **kwargs) -> str:
    (work / "home").mkdir(exist_ok=True)
    result = subprocess.run(
        command,
        env={**ENV, "HOME": str(work / "home")},
        capture_output=True,
        timeout=60,
        check=False,
        **kwargs,
    )
    log = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, log
    return result.stdout.decode("latin-1")


def test_poplib_and_curl_retrieve_every_message_byte_for_byte(server, tmp_path):
    """RFC 1939 s5: RETR gives the message as delivered, under every profile; STAT and
    LIST agree with each other (exact or estimated, 2.1.4/2.1.5)."""
    delivered = server.deliver("alice", *MESSAGES)
    client = poplib.POP3_SSL(
        server.host, server.tls_port, context=server.tls.client_context(), timeout=TIMEOUT
    )
    try:
        client.user("alice")
        client.pass_(USERS["alice"])
        _, listing, _ = client.list()
        sizes = [int(line.split()[1]) for line in listing]
        assert client.stat() == (len(delivered), sum(sizes))
        for n, d in enumerate(delivered, 1):
            assert message_text(client.retr(n)[1]) == d.text
    finally:
        client.quit()
    curl = [require("curl"), "--silent", "--show-error", "--max-time", "20", "--ssl-reqd"]
    curl += ["--cacert", str(server.tls.ca_file), "--user", f"alice:{USERS['alice']}"]
    curl += ["--login-options", "AUTH=PLAIN"]
    for n, d in enumerate(delivered, 1):
        url = f"pop3://{server.host}:{server.port}/{n}"
        assert run([*curl, url], tmp_path).encode("latin-1") == d.text


def test_fetchmail_and_mpop_collect_every_message(server, tmp_path):
    """fetchmail over STLS and mpop over implicit TLS download what was delivered."""
    delivered = server.deliver("alice", *MESSAGES)
    expected = sorted(d.text.replace(b"\r\n", b"\n") for d in delivered)
    out = tmp_path / "out"
    out.mkdir()
    rcfile = tmp_path / "fetchmailrc"
    rcfile.write_text(
        f"poll {server.host} with proto POP3 port {server.port} timeout 20 auth password\n"
        f'  user "alice" there with password "{USERS["alice"]}" is "alice" here\n'
        f'  options keep no rewrite sslcertck sslcertfile "{server.tls.ca_file}"'
        f' sslcommonname "localhost" sslproto "TLS1.2+"\n'
        f'  mda "cat > $(mktemp {out}/msg.XXXXXX)"\n',
        encoding="utf-8",
    )
    rcfile.chmod(0o600)  # fetchmail refuses a readable rcfile: it holds a password
    fetchmail = [require("fetchmail"), "--fetchmailrc", str(rcfile), "--nosyslog"]
    run([*fetchmail, "--invisible", "--pidfile", str(tmp_path / "pid")], tmp_path)
    assert sorted(path.read_bytes() for path in out.iterdir()) == expected
    assert sorted(mpop(server, tmp_path)) == expected


def mpop(server, work: Path, *extra: str) -> list[bytes]:
    maildir = work / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    run(
        [
            require("mpop"),
            f"--host={server.host}",
            f"--port={server.tls_port}",
            "--timeout=20",
            "--tls=on",
            "--tls-starttls=off",
            f"--tls-trust-file={server.tls.ca_file}",
            "--tls-host-override=localhost",
            "--auth=user",
            "--user=alice",
            f"--passwordeval=echo '{USERS['alice']}'",
            f"--delivery=maildir,{maildir}",
            "--keep=on",
            "--received-header=off",
            *extra,
        ],
        work,
    )
    return [path.read_bytes() for path in (maildir / "new").iterdir()]


def test_openssl_s_client_sees_the_profile_greeting(server):
    """RFC 1939 s4: the greeting is the profile's banner ([Set-PopSettings] -Banner for
    the Exchange profiles; Exchange Online adds the encoded host name, vmime issue 267)."""
    openssl = [require("openssl"), "s_client", "-quiet", "-verify_return_error"]
    openssl += ["-connect", f"{server.host}:{server.tls_port}", "-CAfile", str(server.tls.ca_file)]
    result = subprocess.run(
        openssl,
        input=b"QUIT\r\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    greeting = result.stdout.splitlines(keepends=True)[0]
    banner = server.config.pop3.banner.encode()
    if server.config.compat == "exchange-online":
        assert greeting.startswith(b"+OK " + banner + b" [")
        assert greeting.endswith(b"]\r\n")
    else:
        assert greeting == b"+OK " + banner + b"\r\n"


@pytest.mark.parametrize("compat", ["modern", "exchange2013"])
def test_a_client_trusting_list_sizes_notices_the_estimate_2_1_5(
    compat, start_pop3_server, tmp_path
):
    """2.1.5: with EnableExactRFC822Size off (the Exchange default), LIST gives "the
    amount of storage the message actually occupies".  mpop --skipsize decides from LIST:
    a message whose real size is under the limit but whose estimate is over is skipped
    under exchange2013, and downloaded under modern, which reports exact sizes."""
    server = start_pop3_server(sections={"compat": compat})
    [delivered] = server.deliver("alice", MESSAGES[0])
    limit = delivered.info.size + 1
    assert estimated_size(delivered.info) > limit  # the model's fixed overhead
    got = mpop(server, tmp_path, f"--skipsize={limit}")
    assert got == ([] if compat == "exchange2013" else [delivered.text.replace(b"\r\n", b"\n")])
