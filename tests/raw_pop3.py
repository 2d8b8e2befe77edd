"""A raw POP3 client for the session tests: one blocking socket, every octet counted.

The session tests need what poplib hides: pipelining several commands in one send,
half-closing, reading slowly or not at all, and knowing how many octets went each way.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any, Self

from popbox_servers import USERS

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from popbox_servers import InProcessServer

__all__ = ["CRLF", "LOGIN", "PLAINTEXT", "TIMEOUT", "Client", "wait_until"]

TIMEOUT = 10.0
CRLF = b"\r\n"
PLAINTEXT = {"login_type": "plaintext_login"}  # USER/PASS on the plain port
LOGIN = f"USER alice\r\nPASS {USERS['alice']}\r\n".encode()


class Client:
    """A POP3 client on a socket, counting the octets it sends and receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.sent = 0
        self.received = 0

    @classmethod
    def connect(
        cls,
        server: InProcessServer,
        *,
        tls: ssl.SSLContext | None = None,
        receive_buffer: int | None = None,
    ) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        if receive_buffer is not None:  # before connect: it bounds the advertised window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            sock.connect((server.host, server.tls_port if tls else server.port))
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server.host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def peer(self) -> str:
        """How the server's log names this client."""
        return f"127.0.0.1:{self.local_port}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def recv(self, size: int = 65536) -> bytes:
        chunk = self.sock.recv(size)
        self.received += len(chunk)
        return chunk

    def line(self) -> bytes:
        while CRLF not in self.buffer:
            chunk = self.recv()
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(CRLF)
        return line + CRLF

    def exactly(self, size: int) -> bytes:
        parts = [self.buffer]
        have = len(self.buffer)
        while have < size:
            chunk = self.recv()
            assert chunk, f"the server closed after {have} of {size} octets"
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buffer = data[size:]
        return data[:size]

    def read_to_eof(self) -> bytes:
        parts = [self.buffer]
        while chunk := self.recv():
            parts.append(chunk)
        self.buffer = b""
        return b"".join(parts)

    def log_in(self) -> None:
        """Read the greeting and log in as alice with USER/PASS."""
        assert self.line().startswith(b"+OK ")
        self.send(LOGIN)
        assert self.line() == b"+OK send PASS\r\n"
        assert self.line().startswith(b"+OK logged in")


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``predicate`` until it is true, and return it; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
    return found
