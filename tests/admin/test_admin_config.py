"""``[admin]``: off by default, loopback unless TLS, and a clear one-line refusal."""

from __future__ import annotations

import http.client
import socket
import subprocess

import pytest

from popbox.config import ConfigError, from_mapping
from popbox_servers import ServeProcess, make_tls_files, popbox_executable


def test_admin_is_off_by_default():
    assert from_mapping({}).admin.listen == ()


@pytest.mark.parametrize(
    "address", ["0.0.0.0:8443", "192.0.2.1:8443", "[::]:8443", "mail.example.com:8443"]
)
def test_a_non_loopback_address_without_tls_is_refused(address):
    with pytest.raises(ConfigError, match=r"admin\.listen: .* set admin\.tls = true"):
        from_mapping({"admin": {"listen": [address]}})


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0", "localhost:0"])
def test_loopback_addresses_need_no_tls(address):
    assert from_mapping({"admin": {"listen": [address]}}).admin.listen == (address,)


def test_a_non_loopback_address_with_tls_is_accepted():
    assert from_mapping({"admin": {"listen": ["0.0.0.0:8443"], "tls": True}}).admin.tls


@pytest.mark.parametrize("console", ["true", "false"])
def test_serve_refuses_to_start_with_one_line(tmp_path, console):
    """The console (on by default) or the API alone: no clear text off loopback."""
    config = tmp_path / "popbox.toml"
    config.write_text(
        f'[admin]\nlisten = ["0.0.0.0:0"]\nconsole = {console}\nusers = ["root"]\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [popbox_executable(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        (
            "popbox: admin.listen: '0.0.0.0:0' is not a loopback address, and the admin API "
            "and console would carry tokens, passwords and session cookies in clear text: "
            "set admin.tls = true"
        )
    ]


def test_admin_tls_on_a_node_without_pop3_listeners_serves_https(tmp_path):
    """``admin.tls`` is HTTPS even where no POP3 listener needs a certificate: the admin
    listener never falls back to clear text."""
    tls = make_tls_files(tmp_path / "tls")
    config = tmp_path / "popbox.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[pop3]\nlisten = []\ntls_listen = []\n"
        f'[tls]\ncert_file = "{tls.cert_file}"\nkey_file = "{tls.key_file}"\n'
        '[admin]\nlisten = ["127.0.0.1:0"]\ntls = true\n',
        encoding="utf-8",
    )
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "err"
    )
    try:
        process.wait_for_listeners({"admin"}, timeout=60)
        port = process.port("admin")
        https = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=15, context=tls.client_context()
        )
        try:
            https.request("GET", "/api/v1/health")
            assert https.getresponse().status == 401  # TLS spoken; the token is missing
        finally:
            https.close()
        # Clear text gets no HTTP answer: the TLS server drops it.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as plain:
            plain.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not plain.recv(4096).startswith(b"HTTP/")
    finally:
        process.terminate()
        process.close()
