"""PROXY protocol on real listeners: who is trusted, what the session then sees.

Clients connect from distinct loopback addresses (127.0.0.1 is the "proxy", 127.0.0.3
an untrusted client), so the tests show the server believing a header only from
``server.trusted_proxies``.  The TLS tests send the PROXY header and the ClientHello in
one segment, the way a proxy that forwards at once does: not one byte may be lost.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import struct
import time

import pytest

from popbox_servers import USERS

TIMEOUT = 10.0
PROXY = "127.0.0.1"  # trusted in these tests
STRANGER = "127.0.0.3"  # not trusted


def v1(source: str, sport: int = 40000, dest: str = "192.0.2.1", dport: int = 110) -> bytes:
    return f"PROXY TCP4 {source} {dest} {sport} {dport}\r\n".encode()


def v2(source: str, sport: int = 40000, *, local: bool = False, tlvs: bytes = b"") -> bytes:
    addresses = socket.inet_aton(source) + socket.inet_aton("192.0.2.1")
    body = addresses + struct.pack("!HH", sport, 995) + tlvs
    command = 0x20 if local else 0x21
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([command, 0x11]) + struct.pack("!H", len(body)) + body


def connect(port: int, source: str = PROXY) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), TIMEOUT, source_address=(source, 0))
    sock.settimeout(TIMEOUT)
    return sock


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def closed_unanswered(sock: socket.socket) -> bool:
    """The server closed without a byte (a reset when our bytes were left unread)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def peers_logged(server, event: str = "connect") -> list[str]:
    return [e["peer"] for e in server.log.events() if e.get("event") == event]


@pytest.fixture
def proxied_server(start_pop3_server):
    return start_pop3_server(
        {"login_type": "plaintext_login"},
        sections={"server": {"trusted_proxies": [f"{PROXY}/32"], "proxy_header_timeout": 1.0}},
    )


def test_v1_header_gives_the_session_the_client_address_pp_s2_1(proxied_server):
    """pp 2.1: the address in the header is the one logs, limits and logins see."""
    with connect(proxied_server.port) as sock:
        sock.sendall(v1("198.51.100.7", 51234))
        assert read_line(sock).startswith(b"+OK ")
        sock.sendall(b"USER alice\r\nPASS " + USERS["alice"].encode() + b"\r\nQUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
        assert read_line(sock).startswith(b"+OK logged in")
    deadline = time.monotonic() + TIMEOUT
    while "198.51.100.7:51234" not in peers_logged(proxied_server, "login"):
        assert time.monotonic() < deadline, proxied_server.log.text()
        time.sleep(0.02)
    assert "198.51.100.7:51234" in peers_logged(proxied_server)


def test_header_and_first_command_in_one_segment_lose_nothing_pp_s2_1(proxied_server):
    """pp 2.1: the bytes after the CRLF belong to the client; a pipelined CAPA survives."""
    with connect(proxied_server.port) as sock:
        sock.sendall(v1("198.51.100.8") + b"CAPA\r\n")
        assert read_line(sock).startswith(b"+OK ")
        assert read_line(sock).startswith(b"+OK capability list")


def test_trickled_v2_header_is_assembled_pp_s2_2(proxied_server):
    """pp 2.2: a receiver must wait for the whole header, which may come in pieces."""
    header = v2("203.0.113.9", 4242, tlvs=b"\x04\x00\x03abc")
    with connect(proxied_server.port) as sock:
        for i in range(0, len(header), 5):
            sock.sendall(header[i : i + 5])
            time.sleep(0.01)
        assert read_line(sock).startswith(b"+OK ")
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
    assert "203.0.113.9:4242" in peers_logged(proxied_server)


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_header_before_the_tls_handshake_on_the_implicit_tls_port_pp_s2(proxied_server, header):
    """pp 2: the header precedes everything, the TLS handshake of port 995 included."""
    context = proxied_server.tls.client_context()
    with connect(proxied_server.tls_port) as sock:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        first = header("198.51.100.21", 1995)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(first + outgoing.read())  # header + ClientHello: one segment
                first = b""
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        sock.sendall(outgoing.read())
        banner = b""
        while not banner.endswith(b"\r\n"):
            try:
                banner += tls.read(4096)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        assert banner.startswith(b"+OK ")
    deadline = time.monotonic() + TIMEOUT
    while "198.51.100.21:1995" not in peers_logged(proxied_server):
        assert time.monotonic() < deadline, proxied_server.log.text()
        time.sleep(0.02)


def test_v2_local_keeps_the_proxy_address_pp_s2_2(proxied_server):
    """pp 2.2: LOCAL (a health check of the proxy itself) uses the real endpoints."""
    with connect(proxied_server.port) as sock:
        sock.sendall(v2("203.0.113.1", local=True))
        assert read_line(sock).startswith(b"+OK ")
        local_port = sock.getsockname()[1]
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
    assert f"{PROXY}:{local_port}" in peers_logged(proxied_server)


def test_untrusted_peer_header_is_just_a_bad_command(start_pop3_server):
    """Only trusted proxies may speak for a client; from anyone else it is not POP3."""
    server = start_pop3_server(sections={"server": {"trusted_proxies": [f"{PROXY}/32"]}})
    with connect(server.port, STRANGER) as sock:
        assert read_line(sock).startswith(b"+OK ")  # the banner comes first: no header wait
        sock.sendall(v1("198.51.100.66"))
        assert read_line(sock).startswith(b"-ERR ")
        local_port = sock.getsockname()[1]
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"+OK")
    assert f"{STRANGER}:{local_port}" in peers_logged(server)
    assert not any(p.startswith("198.51.100.66") for p in peers_logged(server))


def test_without_trusted_proxies_nobody_is_trusted(pop3_server):
    with connect(pop3_server.port) as sock:
        assert read_line(sock).startswith(b"+OK ")
        sock.sendall(v2("198.51.100.66"))
        assert read_line(sock).startswith(b"-ERR ")


@pytest.mark.parametrize(
    "data",
    [b"USER alice\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x31"],
    ids=["pop3", "bad-port", "v3"],
)
def test_trusted_peer_without_a_valid_header_is_dropped_unanswered(proxied_server, data):
    """From a trusted proxy the header is required: no banner for anything else."""
    with connect(proxied_server.port) as sock:
        sock.sendall(data)
        assert closed_unanswered(sock)
    events = [e for e in proxied_server.log.events() if e.get("event") == "proxy_header_refused"]
    assert events
    assert events[-1]["level"] == "info"


def test_trusted_peer_that_sends_nothing_is_dropped_after_the_header_timeout(proxied_server):
    with connect(proxied_server.port) as sock:
        started = time.monotonic()
        assert closed_unanswered(sock)
        assert 0.8 < time.monotonic() - started < 5


def test_limits_count_the_client_behind_the_proxy(start_pop3_server):
    """Per-IP limits see the PROXY address: two clients behind one proxy are two IPs."""
    server = start_pop3_server(
        sections={
            "server": {"trusted_proxies": [f"{PROXY}/32"], "max_connections_per_ip": 1},
        }
    )
    first = connect(server.port)
    second = connect(server.port)
    third = connect(server.port)
    try:
        first.sendall(v1("198.51.100.1"))
        assert read_line(first).startswith(b"+OK ")
        second.sendall(v1("198.51.100.2"))
        assert read_line(second).startswith(b"+OK ")
        third.sendall(v1("198.51.100.1"))
        assert read_line(third).startswith(b"-ERR [SYS/TEMP] too many connections from your")
    finally:
        for sock in (first, second, third):
            sock.close()


class ProxiedLmtp(smtplib.LMTP):
    """An LMTP client behind a proxy: the PROXY header goes first on the connection."""

    header = b""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, source_address=(PROXY, 0))
        sock.sendall(self.header)
        return sock


def received_lines(server, user: str) -> list[bytes]:
    [info] = server.call(server.store.snapshot(user))
    wire = server.call(server.store.fetch(user, info.uid))
    return [line for line in wire.split(b"\r\n") if line.startswith(b"Received:")]


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_lmtp_from_a_trusted_proxy_names_the_real_client_rfc2033(proxied_server, header):
    """The Received line of an LMTP delivery (RFC 5321 s4.4) names the proxied client."""
    client = ProxiedLmtp()
    client.header = header("198.51.100.44", 2525)
    client.connect("127.0.0.1", proxied_server.addresses["lmtp"][0][1])
    try:
        assert client.sendmail("carol@example.org", ["alice"], b"Subject: p\r\n\r\nx\r\n") == {}
    finally:
        client.quit()
    assert any(b"[198.51.100.44]" in line for line in received_lines(proxied_server, "alice"))


def test_lmtp_from_an_untrusted_peer_needs_no_header(start_pop3_server):
    server = start_pop3_server(sections={"server": {"trusted_proxies": ["10.0.0.0/8"]}})
    port = server.addresses["lmtp"][0][1]
    with smtplib.LMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        assert client.sendmail("carol@example.org", ["bob"], b"Subject: d\r\n\r\nx\r\n") == {}
    assert any(b"[127.0.0.1]" in line for line in received_lines(server, "bob"))


def test_lmtp_from_a_trusted_peer_without_header_is_dropped(proxied_server):
    with connect(proxied_server.addresses["lmtp"][0][1]) as sock:
        sock.sendall(b"LHLO client.example\r\n")
        assert closed_unanswered(sock)
