"""TLS on the listeners: the handshake timeout setting and the TLS 1.2 suites offered.

Issue 15 item 12: the handshake timeout was a fixed 30 s; it is ``pop3.tls_handshake_timeout``,
by default the unauthenticated timeout (V0002), for port 995 and after STLS alike.  TLS 1.2
offered AES-CBC-SHA256/384 suites; it offers ECDHE with AEAD only, as Mozilla's
"intermediate" profile, checked here with ``openssl s_client`` against the real port.
"""

from __future__ import annotations

import math
import socket
import subprocess
import time

import pytest

from pop3_clients import require
from popbox.config import ConfigError, from_mapping

OK_BEGIN_TLS = b"+OK begin TLS negotiation\r\n"
# Mozilla "intermediate" (v5.7) TLS 1.2 suites for an ECDSA certificate (the test CA's).
INTERMEDIATE_ECDSA_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
}


def seconds_until_closed(sock: socket.socket, limit: float = 10.0) -> float:
    """How long the server leaves a silent client connected (bounded by ``limit``)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept a silent client for more than {limit} s")
    return time.monotonic() - started


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


# -- the setting ------------------------------------------------------------------------------


def test_handshake_timeout_defaults_to_the_unauthenticated_timeout_v0002():
    """V0002: the unauthenticated timeout (60 s) covers the time before login, which a
    TLS handshake is part of."""
    assert from_mapping({}).pop3.handshake_timeout == 60.0
    assert from_mapping({"pop3": {"unauthenticated_timeout": 20}}).pop3.handshake_timeout == 20.0
    explicit = from_mapping({"pop3": {"unauthenticated_timeout": 20, "tls_handshake_timeout": 5}})
    assert explicit.pop3.handshake_timeout == 5.0


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "10"])
def test_bad_handshake_timeout_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"^pop3\.tls_handshake_timeout: must be"):
        from_mapping({"pop3": {"tls_handshake_timeout": value}})


# -- the timeout on the wire ----------------------------------------------------------------------


def test_silent_client_on_the_tls_port_is_closed_after_the_setting(start_pop3_server):
    server = start_pop3_server({"tls_handshake_timeout": 0.5})
    with socket.create_connection((server.host, server.tls_port), 10) as sock:
        waited = seconds_until_closed(sock)
    assert 0.4 < waited < 5


def test_silent_client_after_stls_is_closed_after_the_setting_rfc2595_s4(start_pop3_server):
    """RFC 2595 s4: after "+OK" to STLS the client begins the negotiation; one that never
    does is closed by the handshake timeout, not left for the unauthenticated one (60 s)."""
    server = start_pop3_server({"tls_handshake_timeout": 0.5})
    with socket.create_connection((server.host, server.port), 10) as sock:
        sock.settimeout(10)
        assert read_line(sock).startswith(b"+OK")
        sock.sendall(b"STLS\r\n")
        assert read_line(sock) == OK_BEGIN_TLS
        waited = seconds_until_closed(sock)
    assert 0.4 < waited < 5


def test_unset_handshake_timeout_follows_the_unauthenticated_timeout(start_pop3_server):
    server = start_pop3_server({"unauthenticated_timeout": 0.7})
    with socket.create_connection((server.host, server.tls_port), 10) as sock:
        waited = seconds_until_closed(sock)
    assert 0.6 < waited < 5


# -- the suites, with openssl s_client ----------------------------------------------------------


def pre_tls13_suites(openssl: str) -> list[str]:
    """Every TLS 1.2-and-older suite this OpenSSL knows, weak ones included."""
    listed = subprocess.run(
        [openssl, "ciphers", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()
    return [name for name in listed.split(":") if not name.startswith("TLS_")]


def s_client_completes(openssl: str, port: int, suite: str, ca_file: str) -> bool:
    result = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-tls1_2",
            "-cipher",
            f"{suite}:@SECLEVEL=0",
            "-CAfile",
            ca_file,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return result.returncode == 0 and f"Cipher is {suite}" in result.stdout


def test_tls12_suites_offered_on_port_995_are_ecdhe_aead_only(pop3_server):
    """RFC 9325 s4.2: implementations SHOULD NOT negotiate cipher suites that use CBC
    (the AES-CBC-SHA256/384 suites were offered); Mozilla "intermediate" keeps ECDHE
    with AES-GCM and ChaCha20-Poly1305."""
    openssl = require("openssl")
    ca_file = str(pop3_server.tls.ca_file)
    offered = {
        suite
        for suite in pre_tls13_suites(openssl)
        if s_client_completes(openssl, pop3_server.tls_port, suite, ca_file)
    }
    assert offered == INTERMEDIATE_ECDSA_TLS12
