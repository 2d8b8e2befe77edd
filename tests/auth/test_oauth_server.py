"""OAUTHBEARER failures byte by byte through the server, and a JWKS fetched over https."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading

import pytest

from tokens import Issuer, oauth_settings, oauthbearer


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


class JwksServer:
    """An https server on 127.0.0.1:0 that serves one JWKS and counts the requests."""

    def __init__(self, ca, body: bytes) -> None:
        self.body = body
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks_server(ca, issuer):
    server = JwksServer(ca, json.dumps(issuer.jwks()).encode())
    yield server
    server.close()


def auth_line(message: bytes) -> bytes:
    return b"AUTH OAUTHBEARER " + base64.b64encode(message) + b"\r\n"


def test_refusal_sends_error_json_then_err_auth_rfc7628_s3_2_2(auth_server, issuer, tmp_path):
    """RFC 7628 s3.2.2: on failure the server sends the error JSON as a challenge, the
    client answers with a single %x01, and the server then fails the exchange."""
    server = auth_server(oauth_settings(str(issuer.write_jwks(tmp_path / "jwks.json"))))
    server.add_user("alice", "pw")
    client = server.connect(tls=True)
    reply = client.ask(auth_line(oauthbearer(issuer.token(sub="alice", aud="other"))))
    assert reply.startswith(b"+ ")
    error = json.loads(base64.b64decode(reply[2:]))
    assert error == {"status": "invalid_token", "schemes": "bearer"}
    assert client.ask(base64.b64encode(b"\x01") + b"\r\n") == (
        b"-ERR [AUTH] authentication failed\r\n"
    )
    reply = client.ask(auth_line(oauthbearer(issuer.token(sub="alice"))))
    assert reply.startswith(b"+OK logged in")
    failed = server.log.events("login_failed")
    # The claims of a refused token are not trusted: no user is charged for it.
    assert [(e["user"], e["reason"]) for e in failed] == [(None, "token audience is wrong")]


def test_bearer_mechanisms_hidden_before_tls_v0010(auth_server, issuer, tmp_path):
    """A bearer token is as good as a password: OAUTHBEARER/XOAUTH2 follow login_type."""
    server = auth_server(oauth_settings(str(issuer.write_jwks(tmp_path / "jwks.json"))))
    client = server.connect()
    assert client.ask(b"AUTH OAUTHBEARER =\r\n") == (
        b"-ERR OAUTHBEARER is only allowed over TLS, issue STLS first\r\n"
    )


def test_jwks_unavailable_is_sys_temp_rfc3206(auth_server, issuer, tmp_path):
    """RFC 3206 [SYS/TEMP]: the key set cannot be loaded; the token may be good."""
    server = auth_server(oauth_settings(str(tmp_path / "missing.json")))
    server.add_user("alice", "pw")
    client = server.connect(tls=True)
    reply = client.ask(auth_line(oauthbearer(issuer.token(sub="alice"))))
    assert reply.startswith(b"-ERR [SYS/TEMP] ")
    assert server.log.events("auth_backend_unavailable")


def test_jwks_fetched_over_https_once_and_cached(auth_server, issuer, ca, jwks_server, tmp_path):
    """oauth_jwks may be an https URL: fetched with the configured CA, then reused for
    oauth_jwks_ttl seconds across sessions."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = auth_server(oauth_settings(jwks_server.url, oauth_jwks_ca_file=str(ca_file)))
    server.add_user("alice", "pw")
    for _ in range(3):
        client = server.connect(tls=True)
        reply = client.ask(auth_line(oauthbearer(issuer.token(sub="alice"))))
        assert reply.startswith(b"+OK logged in")
    assert jwks_server.requests == 1


def test_jwks_url_with_untrusted_certificate_is_unavailable(auth_server, issuer, jwks_server):
    server = auth_server(oauth_settings(jwks_server.url))  # system CAs: the test CA is unknown
    server.add_user("alice", "pw")
    client = server.connect(tls=True)
    assert client.ask(auth_line(oauthbearer(issuer.token(sub="alice")))).startswith(
        b"-ERR [SYS/TEMP]"
    )
    assert jwks_server.requests == 0
