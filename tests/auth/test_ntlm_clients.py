"""AUTH NTLM over real sockets: the [MS-OXPOP3] exchange byte by byte, then real clients.

curl sends NTLMv2 (its NEGOTIATE has no UNICODE flag, so the server answers in OEM);
fetchmail and mpop send only NTLMv1, so they log in only with ``auth.ntlm_allow_v1``.
"""

from __future__ import annotations

import base64
import os
import subprocess
from typing import TYPE_CHECKING

import pytest
import spnego

from ntlm_client import CURL_FLAGS, negotiate, parse_challenge
from popbox.auth.passwords import NT
from popbox.store.message import prepare

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import AuthServer

PASSWORD = "alice secret"
NTLM_ONLY = {"mechanisms": ["NTLM"]}
CLIENT_TIMEOUT = 60


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.fixture
def ntlm_server(auth_server) -> AuthServer:
    server = auth_server(auth={"mechanisms": ["PLAIN", "NTLM"]})
    server.add_user("alice", PASSWORD)
    return server


def test_users_get_an_nt_hash_when_ntlm_is_offered(ntlm_server):
    record = ntlm_server.call(ntlm_server.store.get_user("alice"))
    assert record is not None
    assert len(record.verifiers[NT]) == 32


def test_capa_offers_ntlm_before_tls_because_no_password_crosses_the_wire_v0010(ntlm_server):
    client = ntlm_server.connect()
    client.send(b"CAPA\r\n")
    assert client.line().startswith(b"+OK")
    lines = client.multiline()
    assert b"SASL NTLM\r\n" in lines  # PLAIN is hidden before TLS under secure_login


def test_auth_ntlm_exchange_is_the_ms_oxpop3_one_byte_for_byte(ntlm_server):
    """[MS-OXPOP3] 2.2.1: "AUTH NTLM" → "+ ", NEGOTIATE → "+ CHALLENGE", AUTHENTICATE → +OK."""
    client = ntlm_server.connect()
    ntlm = spnego.client("alice", PASSWORD, hostname="localhost", service="pop", protocol="ntlm")
    assert client.ask(b"AUTH NTLM\r\n") == b"+ \r\n"
    reply = client.ask(b64(ntlm.step()) + b"\r\n")
    assert reply.startswith(b"+ ")
    challenge = base64.b64decode(reply[2:].strip(), validate=True)
    assert client.ask(b64(ntlm.step(challenge)) + b"\r\n").startswith(b"+OK")
    assert client.ask(b"STAT\r\n") == b"+OK 0 0\r\n"


def test_negotiate_as_initial_response_rfc5034_s4(ntlm_server):
    client = ntlm_server.connect()
    reply = client.ask(b"AUTH NTLM " + b64(negotiate(CURL_FLAGS)) + b"\r\n")
    assert reply.startswith(b"+ ")
    challenge = parse_challenge(base64.b64decode(reply[2:].strip()))
    assert challenge.target_name == b"POPBOX"  # OEM: the NEGOTIATE had no UNICODE flag


@pytest.mark.parametrize(
    "message",
    [b"", b"NTLMSSP\0\x01", b"NTLMSSP\0\x03\0\0\0" + bytes(40), os.urandom(64)],
    ids=["empty", "truncated", "wrong-type", "random"],
)
def test_malformed_negotiate_gets_err_and_the_session_goes_on(ntlm_server, message):
    client = ntlm_server.connect()
    assert client.ask(b"AUTH NTLM\r\n") == b"+ \r\n"
    reply = client.ask((b64(message) or b"=") + b"\r\n")
    assert reply.startswith(b"-ERR [AUTH]")
    assert client.ask(b"NOOP\r\n").startswith(b"-ERR")  # still in AUTHORIZATION, not closed


@pytest.mark.parametrize(
    "message",
    [b"NTLMSSP\0\x03\0\0\0" + bytes(20), b"NTLMSSP\0\x03\0\0\0" + b"\xff" * 80, b"junk"],
    ids=["truncated", "offsets-out-of-range", "garbage"],
)
def test_malformed_authenticate_gets_err_not_a_crash(ntlm_server, message):
    client = ntlm_server.connect()
    assert client.ask(b"AUTH NTLM " + b64(negotiate()) + b"\r\n").startswith(b"+ ")
    assert client.ask(b64(message) + b"\r\n").startswith(b"-ERR [AUTH]")
    assert client.ask(b"CAPA\r\n").startswith(b"+OK")


def test_cancelling_mid_exchange_rfc5034_s4(ntlm_server):
    client = ntlm_server.connect()
    assert client.ask(b"AUTH NTLM\r\n") == b"+ \r\n"
    assert client.ask(b"*\r\n").startswith(b"-ERR")
    assert client.ask(b"CAPA\r\n").startswith(b"+OK")


# -- real clients ------------------------------------------------------------------------


def curl(server: AuthServer, tmp_path: Path, password: str) -> subprocess.CompletedProcess[str]:
    ca = tmp_path / "ca.pem"
    server.ca.cert_pem.write_to_path(str(ca))
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--cacert",
            str(ca),
            "--login-options",
            "AUTH=NTLM",
            "--user",
            f"alice:{password}",
            f"pop3s://localhost:{server.tls_port}/",
        ],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


@pytest.mark.clients
def test_curl_logs_in_with_ntlmv2_over_tls(ntlm_server, tmp_path):
    result = curl(ntlm_server, tmp_path, PASSWORD)
    assert result.returncode == 0, result.stderr
    logins = ntlm_server.log.events("login")
    assert [(e["user"], e["mechanism"]) for e in logins] == [("alice", "NTLM")]


@pytest.mark.clients
def test_curl_with_a_wrong_password_is_refused(ntlm_server, tmp_path):
    result = curl(ntlm_server, tmp_path, "not the password")
    assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert not ntlm_server.log.events("login")


@pytest.fixture(params=[True, False], ids=["v1-allowed", "v1-refused"])
def v1_server(request, auth_server) -> tuple[AuthServer, bool]:
    """A server offering only NTLM, with one message for alice; ntlm_allow_v1 on or off."""
    server = auth_server(auth={**NTLM_ONLY, "ntlm_allow_v1": request.param})
    server.add_user("alice", PASSWORD)
    server.call(server.store.deliver("alice", prepare(MESSAGE)))
    return server, request.param


MESSAGE = b"From: carol@example.org\r\nSubject: over NTLM\r\n\r\nHello Alice.\r\n"


def client_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}


def assert_v1_outcome(server: AuthServer, allowed: bool, mailbox: Path) -> None:
    """With the setting on the client logged in and got the message; off, it was refused."""
    if allowed:
        assert [e["mechanism"] for e in server.log.events("login")] == ["NTLM"]
        assert b"Hello Alice." in mailbox.read_bytes()
    else:
        assert not server.log.events("login")
        reasons = [e["reason"] for e in server.log.events("login_failed")]
        assert reasons
        assert all("NTLMv1 refused" in reason for reason in reasons)
        assert not mailbox.exists()


@pytest.mark.clients
def test_fetchmail_ntlm_is_ntlmv1_and_follows_ntlm_allow_v1(v1_server, tmp_path):
    server, allowed = v1_server
    ca, out = tmp_path / "ca.pem", tmp_path / "delivered"
    server.ca.cert_pem.write_to_path(str(ca))
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll localhost proto pop3 port {server.tls_port} auth ntlm\n"
        f' user alice password "{PASSWORD}" ssl sslcertfile {ca} sslcertck keep\n'
        f' mda "cat >> {out}"\n',
        encoding="utf-8",
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "-v"],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    # fetchmail: 0 = mail retrieved, 3 = authentication failed.
    assert result.returncode == (0 if allowed else 3), result.stdout + result.stderr
    assert "POP3> AUTH NTLM" in result.stdout + result.stderr
    assert_v1_outcome(server, allowed, out)


@pytest.mark.clients
def test_mpop_ntlm_is_ntlmv1_and_follows_ntlm_allow_v1(v1_server, tmp_path):
    server, allowed = v1_server
    ca, out = tmp_path / "ca.pem", tmp_path / "mbox"
    server.ca.cert_pem.write_to_path(str(ca))
    result = subprocess.run(
        [
            "mpop",
            "--host=localhost",
            f"--port={server.tls_port}",
            "--tls=on",
            "--tls-starttls=off",
            f"--tls-trust-file={ca}",
            "--auth=ntlm",
            "--user=alice",
            f"--passwordeval=echo {PASSWORD}",
            f"--delivery=mbox,{out}",
            "--keep=on",
        ],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    assert (result.returncode == 0) == allowed, result.stdout + result.stderr
    assert_v1_outcome(server, allowed, out)
