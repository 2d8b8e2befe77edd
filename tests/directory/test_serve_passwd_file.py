"""``popbox serve`` started as an operator does, from the README's passwd-file example,
with real clients over STLS and implicit TLS (issue 11)."""

from __future__ import annotations

import poplib
import re
import smtplib
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dovecot import doveadm_hash

from integration.pop3_clients import require, wait_until
from popbox_servers import ServeProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

    from popbox_servers import TlsFiles

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- passwd-file example: tests/directory/test_serve_passwd_file.py runs this -->"
TIMEOUT = 15
PASSWORDS = {"ann": "ann pässword", "bob": "bob pw", "cy": "cy pw", "old": "old pw"}


def readme_example() -> str:
    """The TOML block that follows the marker in README.md."""
    text = README.read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```toml\n(.*?)```", after, re.DOTALL)
    assert match, "README.md lost its passwd-file example"
    return match[1]


def passwd_lines() -> list[str]:
    return [
        (
            f"ann@example.com:{doveadm_hash('SHA512-CRYPT', PASSWORDS['ann'])}::::::"
            "quota_rule=*:storage=1G"
        ),
        f"bob@example.com:{doveadm_hash('BLF-CRYPT', PASSWORDS['bob'])}",
        (
            f"cy@example.com:{doveadm_hash('SSHA256', PASSWORDS['cy'])}::::::"
            "allow_nets=127.0.0.0/8,::1"
        ),
        (
            f"old@example.com:{doveadm_hash('ARGON2ID', PASSWORDS['old'])}::::::"
            "nologin reason=This mailbox was closed"
        ),
    ]


@pytest.fixture
def served(tmp_path: Path, tls_files: TlsFiles) -> Iterator[tuple[ServeProcess, Path]]:
    """popbox serve on the README example, with this test's paths and ephemeral ports."""
    users = tmp_path / "users.passwd"
    users.write_text("\n".join(passwd_lines()) + "\n", encoding="utf-8")
    config = readme_example()
    for old, new in {
        '"/var/lib/popbox"': f'"{tmp_path / "data"}"',
        '"/etc/popbox/cert.pem"': f'"{tls_files.cert_file}"',
        '"/etc/popbox/key.pem"': f'"{tls_files.key_file}"',
        '"/etc/popbox/users.passwd"': f'"{users}"',
        '"0.0.0.0:110"': '"127.0.0.1:0"',
        '"0.0.0.0:995"': '"127.0.0.1:0"',
        '"127.0.0.1:24"': '"127.0.0.1:0"',
        '"127.0.0.1:9100"': '"127.0.0.1:0"',
    }.items():
        assert old in config, old
        config = config.replace(old, new)
    path = tmp_path / "popbox.toml"
    path.write_text(config, encoding="utf-8")
    process = ServeProcess(
        ["serve", "--config", str(path)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    try:
        process.wait_for_listeners({"pop3", "pop3s", "lmtp", "metrics"})
        yield process, users
    finally:
        process.close()


OPEN: list[poplib.POP3] = []  # closed after each test, passed or not


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def stls(process: ServeProcess, tls_files: TlsFiles) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", process.port("pop3"), timeout=TIMEOUT)
    OPEN.append(client)
    client.stls(tls_files.client_context())
    return client


def pop3s(process: ServeProcess, tls_files: TlsFiles) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL(
        "127.0.0.1", process.port("pop3s"), context=tls_files.client_context(), timeout=TIMEOUT
    )
    OPEN.append(client)
    return client


def login_reply(client: poplib.POP3, user: str, password: str) -> bytes:
    client.user(user)
    try:
        return client.pass_(password)
    except poplib.error_proto as exc:
        return exc.args[0]


def healthz(process: ServeProcess) -> tuple[int, str]:
    url = f"http://127.0.0.1:{process.port('metrics')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_passwd_file_users_log_in_with_real_clients_over_stls_and_implicit_tls(served, tls_files):
    """Every spelling [names] folds opens the one mailbox; curl and poplib both log in."""
    process, _ = served
    for spelling in ("ann@example.com", "ANN@Example.COM", "EXAMPLE\\ann", "ann"):
        client = stls(process, tls_files)
        assert login_reply(client, spelling, PASSWORDS["ann"]).startswith(b"+OK"), spelling
        assert client.stat() == (0, 0)
        client.quit()
    client = pop3s(process, tls_files)
    assert login_reply(client, "cy", PASSWORDS["cy"]).startswith(b"+OK")  # allow_nets: loopback
    client.quit()
    curl = [require("curl"), "--silent", "--show-error", "--max-time", "20", "--ssl-reqd"]
    curl += ["--cacert", str(tls_files.ca_file), "--user", f"bob@example.com:{PASSWORDS['bob']}"]
    for url in (
        f"pop3://127.0.0.1:{process.port('pop3')}/",  # STLS, as --ssl-reqd demands
        f"pop3s://127.0.0.1:{process.port('pop3s')}/",
    ):
        result = subprocess.run([*curl, url], capture_output=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
    # The first login made each mailbox, with the passwd-file's quota.
    users = subprocess.run(
        [process.process.args[0], "user", "list", "--config", str(Path(process.process.args[3]))],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"ann@example.com\tquota={1024**3}\tused=0" in users
    assert "bob@example.com\tquota=default" in users


def test_a_disabled_account_is_told_only_with_the_right_password(served, tls_files):
    process, _ = served
    client = pop3s(process, tls_files)
    assert login_reply(client, "old", "guess") == b"-ERR [AUTH] authentication failed"
    assert login_reply(client, "nobody", "guess") == b"-ERR [AUTH] authentication failed"
    assert login_reply(client, "old", PASSWORDS["old"]) == (
        b"-ERR [SYS/PERM] account disabled: This mailbox was closed"
    )


def test_the_passwd_file_edited_while_serving_takes_effect_at_the_next_login(served, tls_files):
    process, users = served
    lines = passwd_lines()
    lines[0] = f"ann@example.com:{doveadm_hash('SHA256-CRYPT', 'new ann')}"
    lines.insert(1, "broken line without a password field")
    lines.append(f"dee@example.com:{doveadm_hash('MD5-CRYPT', 'dee pw')}")
    staged = users.with_suffix(".new")
    staged.write_text("\n".join(lines) + "\n", encoding="utf-8")
    staged.replace(users)  # how operators replace a file atomically
    client = stls(process, tls_files)
    assert login_reply(client, "ann", PASSWORDS["ann"]).startswith(b"-ERR [AUTH]")
    assert login_reply(client, "ann", "new ann").startswith(b"+OK")
    client.quit()
    client = stls(process, tls_files)
    assert login_reply(client, "dee", "dee pw").startswith(b"+OK")  # others keep working
    client.quit()
    wait_until(lambda: "passwd_file_line_skipped" in process.stderr())
    assert f"{users}:2" in process.stderr()


def test_lmtp_rcpt_asks_the_chain_and_delivery_makes_the_mailbox(served, tls_files):
    process, _ = served
    with smtplib.LMTP("127.0.0.1", process.port("lmtp"), timeout=TIMEOUT) as lmtp:
        lmtp.ehlo("mx.test")
        lmtp.mail("sender@example.org")
        assert lmtp.rcpt("old@example.com")[0] == 250  # disabled: mail still arrives
        lmtp.rset()  # smtplib reads one reply to DATA: one recipient per transaction
        lmtp.mail("sender@example.org")
        assert lmtp.rcpt("bob@example.com")[0] == 250
        assert lmtp.rcpt("nobody@example.com")[0] == 550
        code, _ = lmtp.data(b"Subject: hi\r\n\r\nhello bob\r\n")
        assert code == 250
    client = pop3s(process, tls_files)
    assert login_reply(client, "bob", PASSWORDS["bob"]).startswith(b"+OK")
    assert client.stat()[0] == 1
    assert b"hello bob" in b"\r\n".join(client.retr(1)[1])
    client.quit()


def test_an_unreadable_passwd_file_is_sys_temp_on_healthz_and_recovers(served, tls_files):
    process, users = served
    assert healthz(process) == (200, "ok\n")
    hidden = users.with_suffix(".away")
    users.replace(hidden)
    client = stls(process, tls_files)
    reply = login_reply(client, "ann", PASSWORDS["ann"])
    assert reply.startswith(b"-ERR [SYS/TEMP] the user directory dovecot-users is not available")
    assert login_reply(client, "ann", "wrong").startswith(b"-ERR [SYS/TEMP]")  # never "wrong"
    assert healthz(process) == (503, "user directory unavailable: dovecot-users\n")
    hidden.replace(users)
    assert login_reply(client, "ann", PASSWORDS["ann"]).startswith(b"+OK")
    assert healthz(process) == (200, "ok\n")
    client.quit()
    log = process.stderr()
    # Once per outage, not per login (both logins reached the worker serving the client).
    assert len(re.findall(r"\] directory_unavailable ", log)) == 1, log
    assert len(re.findall(r"\] directory_recovered ", log)) == 1, log
