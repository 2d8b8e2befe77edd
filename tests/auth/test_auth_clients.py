"""Each mechanism against real clients over real sockets: curl, mpop, Python's poplib."""

from __future__ import annotations

import poplib
import subprocess

import pytest

from tokens import Issuer, oauth_settings

pytestmark = pytest.mark.clients

PASSWORD = "alice secret"
MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture
def server(auth_server, issuer, tmp_path):
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    server = auth_server(
        oauth_settings(
            str(jwks), mechanisms=["PLAIN", "LOGIN", "SCRAM-SHA-256", "OAUTHBEARER", "XOAUTH2"]
        )
    )
    server.add_user("alice", PASSWORD)
    return server


@pytest.fixture
def ca_file(server, tmp_path):
    path = tmp_path / "ca.pem"
    server.ca.cert_pem.write_to_path(str(path))
    return path


def logins(server) -> list[tuple[str, str]]:
    return [(e["user"], e["mechanism"]) for e in server.log.events("login")]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def curl(server, ca_file, *args: str, tls: bool = True) -> subprocess.CompletedProcess[str]:
    url = f"pop3s://localhost:{server.tls_port}/" if tls else f"pop3://localhost:{server.port}/"
    extra = [] if tls else ["--ssl-reqd"]
    return run(["curl", "-sS", "--max-time", "30", "--cacert", str(ca_file), *extra, *args, url])


@pytest.mark.parametrize(("mechanism", "tls"), [("PLAIN", True), ("LOGIN", False)])
def test_curl_password_mechanisms(server, ca_file, mechanism, tls):
    """curl --login-options AUTH=PLAIN over pop3s, AUTH=LOGIN over STLS."""
    server.call(server.store.deliver("alice", _prepared()))
    done = curl(
        server, ca_file, "--login-options", f"AUTH={mechanism}", "-u", f"alice:{PASSWORD}", tls=tls
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", str(len(MESSAGE))]
    assert logins(server) == [("alice", mechanism)]


def test_curl_wrong_password_is_refused(server, ca_file):
    done = curl(server, ca_file, "--login-options", "AUTH=PLAIN", "-u", "alice:wrong")
    assert done.returncode == 67  # CURLE_LOGIN_DENIED
    assert server.log.events("login_failed")[0]["mechanism"] == "PLAIN"


def test_curl_oauthbearer_token(server, ca_file, issuer):
    """curl --oauth2-bearer with AUTH=OAUTHBEARER (RFC 7628)."""
    token = issuer.token(email="alice@example.test")
    done = curl(
        server, ca_file, "--login-options", "AUTH=OAUTHBEARER", "--oauth2-bearer", token,
        "-u", "alice@example.test:",
    )  # fmt: skip
    # The mailbox is the email claim as is (no strip_domain here): no such mailbox.
    assert done.returncode == 67
    token = issuer.token(sub="alice")
    done = curl(
        server, ca_file, "--login-options", "AUTH=OAUTHBEARER", "--oauth2-bearer", token,
        "-u", "alice:",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert logins(server) == [("alice", "OAUTHBEARER")]


def test_curl_xoauth2_token(auth_server, issuer, tmp_path):
    """curl --oauth2-bearer with AUTH=XOAUTH2.  curl 7.88 takes OAUTHBEARER whenever the
    server offers it, whatever --login-options says, so this server offers XOAUTH2 only;
    the domain is stripped from the email claim here (auth.oauth_strip_domain)."""
    jwks = str(issuer.write_jwks(tmp_path / "jwks.json"))
    server = auth_server(
        oauth_settings(jwks, mechanisms=["XOAUTH2"], oauth_strip_domain="example.test")
    )
    server.add_user("alice", PASSWORD)
    ca_file = tmp_path / "ca.pem"
    server.ca.cert_pem.write_to_path(str(ca_file))
    token = issuer.token(email="alice@example.test")
    done = curl(
        server, ca_file, "--login-options", "AUTH=XOAUTH2", "--oauth2-bearer", token,
        "-u", "alice:",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert logins(server) == [("alice", "XOAUTH2")]


def test_curl_expired_token_is_refused(server, ca_file, issuer):
    token = issuer.token(sub="alice", lifetime=-600)
    done = curl(
        server, ca_file, "--login-options", "AUTH=OAUTHBEARER", "--oauth2-bearer", token,
        "-u", "alice:",
    )  # fmt: skip
    assert done.returncode == 67
    assert server.log.events("login_failed")[0]["reason"] == "token expired"


def mpop(server, ca_file, tmp_path, auth: str, secret: str, *, tls: bool = True):  # noqa: PLR0913 - one per mpop setting
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    args = [
        "mpop",
        "--host=localhost",
        f"--port={server.tls_port if tls else server.port}",
        f"--tls={'on' if tls else 'off'}",
        "--tls-starttls=off",
        f"--tls-trust-file={ca_file}",
        f"--auth={auth}",
        "--user=alice",
        f"--passwordeval=cat {secret_file}",
        f"--uidls-file={tmp_path / 'uidls'}",
        "--timeout=20",
        f"--delivery=mbox,{tmp_path / 'mbox'}",
        "--auth-only",
    ]
    if not tls:
        args.remove(f"--tls-trust-file={ca_file}")
    return run(args, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("auth", "tls"), [("plain", True), ("scram-sha-256", False)])
def test_mpop_password_mechanisms(server, ca_file, tmp_path, auth, tls):
    """mpop PLAIN over pop3s; SCRAM-SHA-256 needs no TLS (the password never crosses the
    wire), so it is offered, and works, on the plain port (V0010)."""
    done = mpop(server, ca_file, tmp_path, auth, PASSWORD, tls=tls)
    assert done.returncode == 0, done.stderr
    assert logins(server) == [("alice", auth.upper())]


def test_mpop_scram_wrong_password_is_refused(server, ca_file, tmp_path):
    done = mpop(server, ca_file, tmp_path, "scram-sha-256", "wrong", tls=False)
    assert done.returncode != 0
    assert server.log.events("login_failed")[0]["mechanism"] == "SCRAM-SHA-256"
    assert logins(server) == []


@pytest.mark.parametrize("auth", ["oauthbearer", "xoauth2"])
def test_mpop_bearer_token(server, ca_file, tmp_path, issuer, auth):
    """mpop sends the token (a 700+ octet JWT, more than max_command_size) as a SASL
    response line after an empty challenge."""
    token = issuer.token(sub="alice", padding="x" * 400)
    assert len(token) > 700
    done = mpop(server, ca_file, tmp_path, auth, token)
    assert done.returncode == 0, done.stderr
    assert logins(server) == [("alice", auth.upper())]


def test_poplib_user_pass_over_tls(server):
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, context=server.client_context(), timeout=10
    )
    try:
        assert client.user("alice").startswith(b"+OK")
        assert client.pass_(PASSWORD).startswith(b"+OK")
        assert client.stat() == (0, 0)
    finally:
        client.quit()
    assert logins(server) == [("alice", "USER")]


def test_poplib_user_refused_before_tls_under_secure_login(server):
    client = poplib.POP3("localhost", server.port, timeout=10)
    try:
        assert "USER" not in client.capa()
        with pytest.raises(poplib.error_proto, match="only allowed over TLS"):
            client.user("alice")
    finally:
        client.quit()


def _prepared():
    from popbox.store.message import prepare  # noqa: PLC0415 - keeps the test's imports short

    return prepare(MESSAGE)
