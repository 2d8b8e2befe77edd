"""Client-side helpers for the integration tests: raw sockets, poplib sessions, messages.

Every socket operation has a timeout, so a server that stops answering fails a test
instead of hanging it.
"""

from __future__ import annotations

import poplib
import shutil
import socket
import time
from typing import TYPE_CHECKING, Self

import pytest

from popbox_servers import USERS

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from popbox_servers import Delivered, InProcessServer

TIMEOUT = 10.0
CRLF = b"\r\n"

# Messages that exercise the wire form: leading dots (byte-stuffing), 8-bit octets,
# a header-only message, a line that is just ".", and an LF-only message (stored as CRLF).
MESSAGES: tuple[bytes, ...] = (
    b"From: carol@example.org\r\nTo: alice@example.org\r\nSubject: one\r\n\r\nHello Alice.\r\n",
    (
        b"From: carol@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n"
        b"after a lone dot\r\n...\r\nend\r\n"
    ),
    (
        b"From: =?utf-8?q?Ren=C3=A9?= <rene@example.org>\r\nSubject: 8bit\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"caf\xe9 na\xefve \xff\xfe\x80\x81 \xc3\xa9t\xc3\xa9\r\n"
    ),
    b"From: dave@example.org\nSubject: unix line ends\n\nline 1\nline 2\n.dot line\n",
    b"Subject: headers only\r\n\r\n",
)


def require(binary: str) -> str:
    """The path of a client program the test drives; missing means the setup is broken."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run scripts/setup (CI installs it)")
    return path


def message_text(lines: list[bytes]) -> bytes:
    """What poplib's RETR/TOP lines (unstuffed, line ends removed) stand for on the wire."""
    return b"".join(line + CRLF for line in lines)


def big_message(size: int) -> bytes:
    """A message of about ``size`` octets with 78-octet lines, some starting with a dot."""
    header = b"From: big@example.org\r\nSubject: big\r\n\r\n"
    line_count = (size - len(header)) // 80
    body = b"".join(
        (b"." if n % 7 == 0 else b"x") + (b"%08d" % n) + b"y" * 69 + CRLF for n in range(line_count)
    )
    return header + body


def pop3_ssl(server: InProcessServer) -> poplib.POP3_SSL:
    return poplib.POP3_SSL(
        server.host, server.tls_port, context=server.tls.client_context(), timeout=TIMEOUT
    )


def login(server: InProcessServer, user: str = "alice") -> poplib.POP3_SSL:
    """A poplib session over implicit TLS, logged in with USER/PASS."""
    client = pop3_ssl(server)
    client.user(user)
    client.pass_(USERS[user])
    return client


def assert_mailbox(server: InProcessServer, user: str, delivered: list[Delivered]) -> None:
    """A fresh poplib session sees exactly ``delivered``, byte for byte, and changes nothing."""
    client = login(server, user)
    try:
        assert client.stat() == (len(delivered), sum(d.info.size for d in delivered))
        _, uidls, _ = client.uidl()
        assert uidls == [f"{n} {d.info.uidl}".encode() for n, d in enumerate(delivered, 1)]
        for n, d in enumerate(delivered, 1):
            _, lines, _ = client.retr(n)
            assert message_text(lines) == d.text
    finally:
        client.quit()
    assert server.uids(user) == [d.info.uid for d in delivered]


class RawClient:
    """A socket speaking bytes to the server, for input no real client would send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> RawClient:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        return cls(sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def line(self) -> bytes:
        """The next line, CRLF included; b"" once the server has closed."""
        while CRLF not in self._buffer:
            if not self._fill():
                rest, self._buffer = self._buffer, b""
                return rest
        line, _, self._buffer = self._buffer.partition(CRLF)
        return line + CRLF

    def lines(self, count: int) -> list[bytes]:
        return [self.line() for _ in range(count)]

    def multiline(self) -> bytes:
        """A status line and, if +OK, the data up to and including the ".CRLF" terminator."""
        status = self.line()
        if not status.startswith(b"+OK"):
            return status
        out = [status]
        while (line := self.line()) != b".\r\n":
            assert line, "the connection closed inside a multi-line response"
            out.append(line)
        return b"".join([*out, line])

    def read_to_eof(self) -> bytes:
        """Everything up to the server's close (fails the test if it never closes)."""
        while self._fill():
            pass
        rest, self._buffer = self._buffer, b""
        return rest

    def start_tls(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        assert not self._buffer, "plaintext left unread before the TLS handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname=host)


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def pop3_stls(server: InProcessServer) -> poplib.POP3:
    """A poplib session on the plain port, upgraded with STLS (RFC 2595), not logged in."""
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    client.stls(server.tls.client_context())
    return client


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
