"""Hostile and broken input: the server answers -ERR or closes cleanly, and loses nothing.

Every test ends with a normal poplib session that must see the whole mailbox byte for
byte (``assert_mailbox``), and the fixture fails the test if any session crashed.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import time

import pytest

from pop3_clients import MESSAGES, RawClient, assert_mailbox, rss_kib
from popbox_servers import USERS

STATUS = (b"+OK", b"-ERR ")


@pytest.fixture
def mailbox(pop3_server):
    return pop3_server.deliver("alice", *MESSAGES)


def _replies_until_close(server, payload: bytes, *, tls: bool = False) -> list[bytes]:
    """Send ``payload`` then QUIT; every line the server sent until it closed."""
    context = server.tls.client_context() if tls else None
    with RawClient.connect(
        server.host, server.tls_port if tls else server.port, tls=context
    ) as raw:
        assert raw.line().startswith(b"+OK")
        raw.send(payload + b"QUIT\r\n")
        return raw.read_to_eof().splitlines(keepends=True)


def _assert_all_errors_then_quit(lines: list[bytes], count: int) -> None:
    assert len(lines) == count + 1, lines
    for line in lines[:-1]:
        assert line.startswith(b"-ERR ")
        assert len(line) > len(b"-ERR \r\n")  # V0001: informative text
    assert lines[-1] == b"+OK signing off\r\n"


def test_nul_bytes_get_err_rfc1939_s3(pop3_server, mailbox):
    """RFC 1939 s3: commands are printable ASCII; a NUL byte is refused, not truncated at."""
    payload = b"\x00\r\nCA\x00PA\r\nUSER al\x00ice\r\n" + b"\x00" * 300 + b"\r\n"
    _assert_all_errors_then_quit(_replies_until_close(pop3_server, payload), 4)
    assert_mailbox(pop3_server, "alice", mailbox)


def test_eight_bit_bytes_get_a_status_line_each(pop3_server, mailbox):
    """8-bit octets in commands and arguments never break the session."""
    payload = (
        b"\xff\xfe\xfd\r\n\x80\x81\r\nCAPA \xe9\r\nUSER \xe9l\xe8ve\r\nUSER \xc3\xa9l\xc3\xa8ve\r\n"
    )
    lines = _replies_until_close(pop3_server, payload, tls=True)
    assert len(lines) == 6
    assert all(line.startswith(STATUS) for line in lines)
    assert lines[-1] == b"+OK signing off\r\n"
    assert_mailbox(pop3_server, "alice", mailbox)


def test_100_kb_line_without_crlf_gets_one_err_and_the_session_goes_on_e0006(pop3_server, mailbox):
    """2.1.2/E0006: an over-long line gets one -ERR, is discarded whole, the session goes on."""
    with RawClient.connect(pop3_server.host, pop3_server.port) as raw:
        raw.line()
        raw.send(b"A" * 100_000)
        assert raw.line() == b"-ERR line too long: the limit is 512 octets including CRLF\r\n"
        raw.send(b"B" * 1000 + b"\r\nNOOP\r\n")  # the tail of the same line: no second -ERR
        assert raw.line().startswith(b"-ERR NOOP is not allowed before login")
        raw.send(b"QUIT\r\n")
        assert raw.read_to_eof() == b"+OK signing off\r\n"
    assert_mailbox(pop3_server, "alice", mailbox)


def test_endless_line_does_not_grow_server_memory(pop3_server, mailbox):
    """The framing buffer never holds more than the limit, however long a line runs."""
    chunk = b"x" * 65536
    with RawClient.connect(pop3_server.host, pop3_server.port) as raw:
        raw.line()
        raw.send(chunk * 16)  # warm up: allocations that happen once
        assert raw.line().startswith(b"-ERR line too long")
        before = rss_kib()
        for _ in range(800):  # 50 MiB without a line end
            raw.send(chunk)
        raw.send(b"\r\nQUIT\r\n")
        assert raw.read_to_eof() == b"+OK signing off\r\n"
        grown = rss_kib() - before
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB while 50 MiB were discarded"
    assert_mailbox(pop3_server, "alice", mailbox)


def test_bare_cr_is_not_a_line_end_rfc1939_s3(pop3_server, mailbox):
    """RFC 1939 s3: lines end with CRLF (popbox also takes a bare LF); a bare CR is data."""
    payload = b"CAPA\rQUIT\r\n\r\r\r\n\rNOOP\r\n"
    _assert_all_errors_then_quit(_replies_until_close(pop3_server, payload), 3)
    assert_mailbox(pop3_server, "alice", mailbox)


def test_empty_lines_get_err(pop3_server, mailbox):
    """An empty command line is an error with a reason, not silence (V0001)."""
    _assert_all_errors_then_quit(_replies_until_close(pop3_server, b"\r\n\r\n\n  \r\n\t\r\n"), 5)
    assert_mailbox(pop3_server, "alice", mailbox)


def test_session_sent_one_byte_at_a_time_works(pop3_server, mailbox):
    """Framing does not depend on how the bytes are split into segments or TLS records."""
    script = f"USER alice\r\nPASS {USERS['alice']}\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n"
    context = pop3_server.tls.client_context()
    with RawClient.connect(pop3_server.host, pop3_server.tls_port, tls=context) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.line()
        for byte in script.encode():
            raw.send(bytes([byte]))
            time.sleep(0.001)
        size = sum(d.info.size for d in mailbox)
        assert raw.lines(3)[2] == f"+OK {len(mailbox)} {size}\r\n".encode()
        assert raw.multiline().endswith(b".\r\n")
        assert raw.lines(2) == [
            b"+OK message 1 deleted\r\n",
            b"+OK signing off, 1 message deleted\r\n",
        ]
    assert_mailbox(pop3_server, "alice", mailbox[1:])


def _read_until_closed(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass  # as clean a refusal as EOF


def test_garbage_instead_of_a_tls_handshake_is_closed_cleanly(pop3_server, mailbox):
    """Plaintext on the implicit-TLS port, or junk after STLS, ends only that connection."""
    with socket.create_connection((pop3_server.host, pop3_server.tls_port), timeout=10) as sock:
        sock.sendall(b"USER alice\r\nPASS x\r\n" + bytes(range(256)) * 4)
        _read_until_closed(sock)  # a TLS alert and EOF, or a reset; a timeout fails
    with RawClient.connect(pop3_server.host, pop3_server.port) as raw:
        raw.line()
        raw.send(b"STLS\r\n")
        assert raw.line().startswith(b"+OK")
        raw.send(b"\x16\x03\x01\x00\x05hello" + bytes(range(256)))
        with pytest.raises((ssl.SSLError, OSError)):
            raw.start_tls(pop3_server.tls.client_context())
    assert_mailbox(pop3_server, "alice", mailbox)


async def _capa_quit(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        banner = await reader.readline()
        writer.write(b"CAPA\r\nQUIT\r\n")
        rest = await reader.read()  # until the server closes after QUIT
    finally:
        writer.close()
        await writer.wait_closed()
    return banner + rest


def test_500_concurrent_connections_are_all_served(pop3_server, mailbox):
    """Five hundred clients at once all get the banner, CAPA and QUIT answered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * 500 + 100  # both ends live in this process
    if soft < needed <= hard or (hard == resource.RLIM_INFINITY and soft < needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))

    async def run() -> list[bytes | BaseException]:
        tasks = [_capa_quit(pop3_server.host, pop3_server.port) for _ in range(500)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    try:
        results = asyncio.run(run())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    for transcript in results:
        assert isinstance(transcript, bytes)
        assert transcript.startswith(
            b"+OK popbox POP3 server ready\r\n+OK capability list follows\r\n"
        )
        assert transcript.endswith(b".\r\n+OK signing off\r\n")
    assert_mailbox(pop3_server, "alice", mailbox)
