"""AUTH GSSAPI with real clients (curl, fetchmail, mpop) against a throwaway MIT realm.

The clients get a TGT with kinit; the server accepts with the realm's service keytab.
The replay test captures curl's first token on the wire through a recording proxy and
sends it again over a raw socket to the same, still running, server.
"""

from __future__ import annotations

import base64
import selectors
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import pytest

from popbox.store.message import prepare

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import AuthServer
    from krb5realm import Realm

CLIENT_TIMEOUT = 60
MESSAGE = b"From: carol@example.org\r\nSubject: over Kerberos\r\n\r\nHello Alice.\r\n"


@pytest.fixture
def gssapi_server(
    auth_server: Callable[..., AuthServer], kerberos_realm: Realm
) -> Callable[..., AuthServer]:
    """Factory: a server offering GSSAPI with the realm's keytab; alice has one message."""

    def start(**auth: object) -> AuthServer:
        server = auth_server(
            auth={
                "mechanisms": ["GSSAPI"],
                "gssapi_keytab": str(kerberos_realm.service_keytab),
                "gssapi_service_name": "pop@localhost",
                **auth,
            }
        )
        for user in ("alice", "bob"):
            server.add_user(user, f"{user} unused password")
        server.call(server.store.deliver("alice", prepare(MESSAGE)))
        return server

    return start


def client_env(realm: Realm, user: str, tmp_path: Path) -> dict[str, str]:
    env = realm.kinit(user, tmp_path / f"{user}.ccache")
    return {**env, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
    )


def curl(url: str, env: dict[str, str], ca: Path) -> subprocess.CompletedProcess[str]:
    # "-u :" (no user name): with GSS-API curl takes the identity from the credential
    # cache; a user name without a realm would make it skip GSSAPI.
    args = ["curl", "--silent", "--show-error", "--max-time", "30", "--cacert", str(ca)]
    return run([*args, "--login-options", "AUTH=GSSAPI", "--user", ":", url], env)


def ca_file(server: AuthServer, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    server.ca.cert_pem.write_to_path(str(path))
    return path


def logins(server: AuthServer) -> list[tuple[str, str]]:
    return [(e["user"], e["mechanism"]) for e in server.log.events("login")]


@pytest.mark.clients
def test_curl_logs_in_with_gssapi_over_tls(gssapi_server, kerberos_realm, tmp_path):
    server = gssapi_server()
    env = client_env(kerberos_realm, "alice", tmp_path)
    result = curl(f"pop3s://localhost:{server.tls_port}/1", env, ca_file(server, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode().replace(b"\n", b"\r\n") == MESSAGE
    assert logins(server) == [("alice", "GSSAPI")]


@pytest.mark.clients
def test_curl_principal_without_a_mailbox_is_refused(gssapi_server, kerberos_realm, tmp_path):
    server = gssapi_server()
    env = client_env(kerberos_realm, "carol", tmp_path)
    result = curl(f"pop3s://localhost:{server.tls_port}/", env, ca_file(server, tmp_path))
    assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert not logins(server)
    assert [e["user"] for e in server.log.events("login_failed")] == ["carol@TEST.POPBOX"]


@pytest.mark.clients
def test_fetchmail_logs_in_with_gssapi(gssapi_server, kerberos_realm, tmp_path):
    """fetchmail sends its user name as the authorization identity: it must be allowed."""
    server = gssapi_server()
    ca, out = ca_file(server, tmp_path), tmp_path / "delivered"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll localhost proto pop3 port {server.tls_port} auth gssapi\n"
        f' user alice ssl sslcertfile {ca} sslcertck keep mda "cat >> {out}"\n',
        encoding="utf-8",
    )
    rc.chmod(0o600)
    env = client_env(kerberos_realm, "alice", tmp_path)
    result = run(["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "-v"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "POP3> AUTH GSSAPI" in result.stdout + result.stderr
    assert b"Hello Alice." in out.read_bytes()
    assert logins(server) == [("alice", "GSSAPI")]


@pytest.mark.clients
def test_mpop_logs_in_with_gssapi(gssapi_server, kerberos_realm, tmp_path):
    server = gssapi_server()
    out = tmp_path / "mbox"
    args = [
        "mpop",
        "--host=localhost",
        f"--port={server.tls_port}",
        "--tls=on",
        "--tls-starttls=off",
        f"--tls-trust-file={ca_file(server, tmp_path)}",
        "--auth=gssapi",
        "--user=alice",
        f"--delivery=mbox,{out}",
        "--keep=on",
    ]
    result = run(args, client_env(kerberos_realm, "alice", tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Hello Alice." in out.read_bytes()
    assert logins(server) == [("alice", "GSSAPI")]


class RecordingProxy:
    """Forwards one TCP connection to ``port`` and keeps what the client sent."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(CLIENT_TIMEOUT)
        self.port: int = self._listener.getsockname()[1]
        self.from_client = bytearray()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with (
            self._listener,
            self._listener.accept()[0] as client,
            socket.create_connection(("127.0.0.1", self._target), 10) as upstream,
        ):
            self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        deadline = time.monotonic() + CLIENT_TIMEOUT
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                for key, _ in selector.select(1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        self.from_client += data
                    peers[sock].sendall(data)

    def join(self) -> None:
        self._thread.join(CLIENT_TIMEOUT)

    def first_gssapi_token(self) -> bytes:
        lines = bytes(self.from_client).split(b"\r\n")
        return base64.b64decode(lines[lines.index(b"AUTH GSSAPI") + 1], validate=True)


def replay(server: AuthServer, token: bytes) -> bytes:
    client = server.connect()
    try:
        assert client.ask(b"AUTH GSSAPI\r\n") == b"+ \r\n"
        return client.ask(base64.b64encode(token) + b"\r\n")
    finally:
        client.close()


@pytest.mark.clients
def test_a_captured_first_token_replayed_is_refused(gssapi_server, kerberos_realm, tmp_path):
    """A ticket + authenticator accepted once is refused within its lifetime: by the same
    running server, and by a restarted one sharing the replay cache."""
    rcache = f"file2:{tmp_path / 'shared.rcache'}"
    server = gssapi_server(gssapi_replay_cache=rcache)
    proxy = RecordingProxy(server.port)  # GSSAPI is allowed before TLS: nothing to steal
    env = client_env(kerberos_realm, "alice", tmp_path)
    result = curl(f"pop3://localhost:{proxy.port}/", env, ca_file(server, tmp_path))
    proxy.join()
    assert result.returncode == 0, result.stderr
    assert logins(server) == [("alice", "GSSAPI")]
    token = proxy.first_gssapi_token()

    assert replay(server, token).startswith(b"-ERR [AUTH]")
    reasons = [e["reason"] for e in server.log.events("login_failed")]
    assert len(reasons) == 1
    assert "replay" in reasons[0].lower()
    server.stop()
    assert replay(gssapi_server(gssapi_replay_cache=rcache), token).startswith(b"-ERR [AUTH]")
    assert logins(server) == [("alice", "GSSAPI")]
