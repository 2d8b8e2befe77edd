"""End to end: ``popbox serve`` with the README's LDAP directory, real clients, LMTP.

One popbox process for the module, its only directory the session's slapd (ldaps://,
the test CA).  Mail comes in over LMTP to an LDAP user whose mailbox did not exist
before; curl, poplib, mpop and fetchmail log in over STLS and implicit TLS with the
directory's password and collect it.
"""

from __future__ import annotations

import poplib
import shutil
import smtplib
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from popbox_servers import ServeProcess
from slapd import BASE_DN, SERVICE_DN, SERVICE_PASSWORD, USERS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.clients

ANN = USERS["ann"]
TIMEOUT = 10.0
MESSAGE = b"From: carol@example.org\r\nTo: ann@example.com\r\nSubject: via ldap\r\n\r\nHi.\r\n"


README_FILTER = "(&(objectClass=inetOrgPerson)(uid=%n))"


def readme_config(
    data_dir: Path, tls, uri: str, *, search_filter: str = README_FILTER, extra: str = ""
) -> str:
    """The README's LDAP example, on loopback ports and the test's slapd; ``extra`` is
    appended to the ``[[directory]]`` table (and may open further tables)."""
    secret = data_dir.parent / "ldap-bind-password"
    secret.write_text(SERVICE_PASSWORD + "\n")
    secret.chmod(0o600)
    return f"""\
data_dir = "{data_dir}"

[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
auth_failure_delay = 0.05

[tls]
cert_file = "{tls.cert_file}"
key_file = "{tls.key_file}"

[lmtp]
listen = ["127.0.0.1:0"]

[[directory]]
name = "corp"
type = "ldap"
uris = ["{uri}"]
ca_file = "{tls.ca_file}"
bind_dn = "{SERVICE_DN}"
bind_password_file = "{secret}"
base_dn = "ou=people,{BASE_DN}"
filter = "{search_filter}"
mailbox_attribute = "mail"
quota_attribute = "mailQuotaBytes"
active_directory = true
{extra}"""


def require(binary: str) -> str:
    """The path of a client program; missing means the setup is broken (scripts/setup)."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run scripts/setup (CI installs it)")
    return path


class Served:
    def __init__(self, process: ServeProcess, ca_file: Path) -> None:
        self.process = process
        self.ca_file = ca_file
        self.host = "127.0.0.1"
        self.port = process.port("pop3")
        self.tls_port = process.port("pop3s")
        self.lmtp_port = process.port("lmtp")


@pytest.fixture(scope="module")
def served(slapd, tls_files, tmp_path_factory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("ldap-serve")
    config = folder / "popbox.toml"
    config.write_text(readme_config(folder / "data", tls_files, slapd.ldaps_uri))
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=folder, stderr_path=folder / "stderr.log"
    )
    try:
        process.wait_for_listeners({"pop3", "pop3s", "lmtp"})
        served = Served(process, tls_files.ca_file)
        # ann has never logged in: RCPT asks the directory, and the delivery makes
        # the mailbox the directory names.
        with smtplib.LMTP(served.host, served.lmtp_port, timeout=TIMEOUT) as lmtp:
            refused = lmtp.sendmail("carol@example.org", ["ann@example.com"], MESSAGE)
        assert refused == {}
        yield served
    finally:
        process.close()


def test_lmtp_refuses_a_recipient_the_directory_does_not_know(served):
    with (
        smtplib.LMTP(served.host, served.lmtp_port, timeout=TIMEOUT) as lmtp,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        lmtp.sendmail("carol@example.org", ["ghost@example.com"], MESSAGE)
    ((code, _),) = refused.value.recipients.values()
    assert code == 550


@pytest.mark.parametrize("tls", ["stls", "implicit"])
def test_poplib_logs_in_with_the_directory_password(served, tls_files, tls):
    context = tls_files.client_context()
    if tls == "stls":
        client = poplib.POP3(served.host, served.port, timeout=TIMEOUT)
        client.stls(context)
    else:
        client = poplib.POP3_SSL(served.host, served.tls_port, context=context, timeout=TIMEOUT)
    try:
        client.user("ann")
        assert client.pass_(ANN.password).startswith(b"+OK")
        assert client.stat()[0] == 1
        assert b"Subject: via ldap" in b"\r\n".join(client.retr(1)[1])
    finally:
        client.quit()


def test_wrong_password_and_disabled_account_over_pop3(served, tls_files):
    """A wrong password is [AUTH]; bob (disabled in AD) gets his reason only with his
    password, and the wrong-password answer otherwise."""
    answers = {}
    for user, password in (("ann", "wrong"), ("bob", "wrong"), ("bob", USERS["bob"].password)):
        client = poplib.POP3_SSL(
            served.host, served.tls_port, context=tls_files.client_context(), timeout=TIMEOUT
        )
        client.user(user)
        with pytest.raises(poplib.error_proto) as failed:
            client.pass_(password)
        answers[user, password] = failed.value.args[0]
        client.close()
    assert answers["ann", "wrong"] == answers["bob", "wrong"]
    assert answers["ann", "wrong"].startswith(b"-ERR [AUTH]")
    disabled = answers["bob", USERS["bob"].password]
    assert disabled.startswith(b"-ERR [SYS/PERM]")
    assert b"disabled" in disabled


@pytest.mark.parametrize("tls", ["stls", "implicit"])
def test_curl_retrieves_the_message(served, tls):
    if tls == "stls":
        url, extra = f"pop3://{served.host}:{served.port}/1", ["--ssl-reqd"]
    else:
        url, extra = f"pop3s://{served.host}:{served.tls_port}/1", []
    result = subprocess.run(
        [
            require("curl"),
            *("--silent", "--show-error", "--max-time", "20", *extra),
            *("--cacert", str(served.ca_file), "--user", f"ann:{ANN.password}", url),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(MESSAGE)  # after the Return-Path LMTP added


def test_mpop_over_implicit_tls(served, tmp_path):
    maildir = tmp_path / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    result = subprocess.run(
        [
            require("mpop"),
            f"--host={served.host}",
            f"--port={served.tls_port}",
            "--timeout=20",
            "--tls=on",
            "--tls-starttls=off",
            f"--tls-trust-file={served.ca_file}",
            "--tls-host-override=localhost",
            "--auth=user",
            "--user=ann",
            f"--passwordeval=echo '{ANN.password}'",
            f"--delivery=maildir,{maildir}",
            "--keep=on",
            "--received-header=off",
        ],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (got,) = [path.read_bytes() for path in (maildir / "new").iterdir()]
    assert got.endswith(MESSAGE.replace(b"\r\n", b"\n"))


def test_fetchmail_over_stls(served, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rcfile = tmp_path / "fetchmailrc"
    rcfile.write_text(
        f"poll {served.host} with proto POP3 port {served.port} timeout 20\n"
        f'  user "ann" there with password "{ANN.password}" is "ann" here\n'
        f'  options keep no rewrite sslcertck sslcertfile "{served.ca_file}"'
        ' sslcommonname "localhost" sslproto "TLS1.2+"\n'
        f'  mda "cat > $(mktemp {out}/msg.XXXXXX)"\n',
        encoding="utf-8",
    )
    rcfile.chmod(0o600)  # fetchmail refuses a readable rcfile: it holds a password
    result = subprocess.run(
        [
            require("fetchmail"),
            *("--fetchmailrc", str(rcfile), "--nosyslog", "--invisible", "--verbose"),
            # As root fetchmail would lock a file in /var/run shared by concurrent runs.
            *("--pidfile", str(tmp_path / "fetchmail.pid")),
        ],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (got,) = [path.read_bytes() for path in out.iterdir()]
    assert got.replace(b"\r\n", b"\n").endswith(b"Subject: via ldap\n\nHi.\n")


def test_active_directory_recipe_login_forms(slapd, tls_files, tmp_path):
    """The README's Active Directory recipe: DOMAIN\\user, user@REALM and the bare name
    open one mailbox; another NetBIOS domain is not this one's user."""
    ad_filter = "(&(objectClass=inetOrgPerson)(|(sAMAccountName=%n)(userPrincipalName=%u)))"
    extra = (
        'netbios_domain = "EXAMPLE"\n\n'
        '[names]\ndefault_domain = "example.com"\nwindows_domains = ["EXAMPLE=example.com"]\n'
    )
    config = tmp_path / "popbox.toml"
    config.write_text(
        readme_config(
            tmp_path / "data", tls_files, slapd.ldaps_uri, search_filter=ad_filter, extra=extra
        )
    )
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    try:
        process.wait_for_listeners({"pop3s", "lmtp"})
        for delivered, name in enumerate(("EXAMPLE\\ann", "ann@EXAMPLE.COM", "ann")):
            client = poplib.POP3_SSL(
                "127.0.0.1",
                process.port("pop3s"),
                context=tls_files.client_context(),
                timeout=TIMEOUT,
            )
            client.user(name)
            assert client.pass_(ANN.password).startswith(b"+OK"), name
            assert client.stat()[0] == delivered, name  # each form sees the one mailbox
            client.quit()
            with smtplib.LMTP("127.0.0.1", process.port("lmtp"), timeout=TIMEOUT) as lmtp:
                # Each message its own (LMTP drops a repeated one as a duplicate).
                text = MESSAGE.replace(b"via ldap", f"via ldap {delivered}".encode())
                assert lmtp.sendmail("carol@example.org", ["ann@example.com"], text) == {}
        client = poplib.POP3_SSL(
            "127.0.0.1", process.port("pop3s"), context=tls_files.client_context(), timeout=10
        )
        client.user("OTHER\\ann")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_(ANN.password)
        client.close()
    finally:
        process.close()


def _pass_reply(port: int, tls_files, password: str) -> bytes:
    client = poplib.POP3_SSL("127.0.0.1", port, context=tls_files.client_context(), timeout=30)
    try:
        client.user("ann")
        try:
            return client.pass_(password)
        except poplib.error_proto as failed:
            return failed.args[0]
    finally:
        client.close()


def test_directory_outage_is_sys_temp_and_ends_by_itself(own_slapd, tls_files, tmp_path):
    """RFC 3206 [SYS/TEMP] while slapd is down, never [AUTH]; logins work again once it
    is back, without touching popbox."""
    config = tmp_path / "popbox.toml"
    config.write_text(
        readme_config(
            tmp_path / "data", tls_files, own_slapd.ldaps_uri, extra="retry_interval = 0.5\n"
        )
    )
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    try:
        process.wait_for_listeners({"pop3s"})
        port = process.port("pop3s")
        assert _pass_reply(port, tls_files, ANN.password).startswith(b"+OK")

        own_slapd.stop()
        assert _pass_reply(port, tls_files, ANN.password).startswith(b"-ERR [SYS/TEMP]")
        assert _pass_reply(port, tls_files, "wrong").startswith(b"-ERR [SYS/TEMP]")
        own_slapd.resume()

        replies = []
        for _ in range(40):  # the URI's back-off (0.5 s) must pass first
            replies.append(_pass_reply(port, tls_files, ANN.password))
            if replies[-1].startswith(b"+OK"):
                break
            time.sleep(0.25)
        assert replies[-1].startswith(b"+OK"), replies
        assert "directory_unavailable" in process.stderr()
    finally:
        process.close()


def test_the_quota_attribute_limits_deliveries(served):
    """carol's mailQuotaBytes (5000) becomes her mailbox's quota (E0003/E0004): a small
    message is delivered; one larger than the quota (the server has no default quota) is
    refused at RCPT, where the size the client declared (RFC 1870 SIZE) already tells
    (4xx: over_quota = "temporary")."""
    big = MESSAGE + b"x" * 78 * 100
    with smtplib.LMTP(served.host, served.lmtp_port, timeout=TIMEOUT) as lmtp:
        assert lmtp.sendmail("carol@example.org", ["carol@example.com"], MESSAGE) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            lmtp.sendmail("carol@example.org", ["carol@example.com"], big)
    ((code, text),) = refused.value.recipients.values()
    assert (code, b"mailbox is full" in text) == (452, True)
