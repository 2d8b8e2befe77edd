"""A popbox with POP3 and LMTP listeners on its own event-loop thread, for delivery tests.

Theory of operation: ``MailServer`` runs ``app.build_context`` + ``app.start_servers``
(the code ``popbox serve`` runs) on a loop in a background thread, over a SQLite store
in a temporary directory, so tests can talk to it with blocking clients (raw sockets,
poplib, swaks, Postfix) and reach into the store with ``call``.  Everything binds
127.0.0.1 port 0.  ``lmtp_talk`` is a raw-socket LMTP client that reads exactly as many
replies as the protocol promises, so a missing or extra reply fails the test.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from popbox.config import from_mapping
from popbox.node import app
from popbox.observability.log import make_logger

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping
    from pathlib import Path

    from popbox.server.context import ServerContext
    from popbox.store.base import MailStore

_T = TypeVar("_T")
TIMEOUT = 10.0
PASSWORD = "secret"
# Argon2id verifier of PASSWORD, made once: hashing per test would cost ~0.1 s each.
_VERIFIERS: dict[str, str] = {}


def verifiers() -> dict[str, str]:
    if not _VERIFIERS:
        from popbox.auth.passwords import verifiers_for  # noqa: PLC0415

        _VERIFIERS.update(verifiers_for(PASSWORD))
    return dict(_VERIFIERS)


class MailServer:
    """``MailServer(tmp_path, lmtp={...}, quota={...})``; ``stop()`` when done."""

    def __init__(self, data_dir: Path, **sections: Mapping[str, Any]) -> None:
        raw: dict[str, Any] = {
            "data_dir": str(data_dir),
            "pop3": {
                "listen": ["127.0.0.1:0"],
                "tls_listen": [],
                "login_type": "plaintext_login",
                "auth_failure_delay": 0.0,
                "shutdown_grace": 1.0,
            },
            "lmtp": {"listen": ["127.0.0.1:0"], "hostname": "mx.test"},
        }
        for name, values in sections.items():
            raw[name] = {**raw.get(name, {}), **values}
        self.config = from_mapping(raw)
        self.addresses: dict[str, list[tuple[str, int]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._context: ServerContext | None = None
        self._servers: list[Any] = []
        self.call(self._start())

    @property
    def store(self) -> MailStore:
        assert self._context is not None
        return self._context.store

    def port(self, kind: str) -> int:
        return self.addresses[kind][0][1]

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    def add_user(self, name: str, quota: int | None = None) -> None:
        self.call(self.store.add_user(name, verifiers(), quota))

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
            self._loop.close()

    async def _start(self) -> None:
        self._context = await app.build_context(self.config, log=make_logger())
        self._servers, listening = await app.start_servers(self._context)
        for kind, host, port in listening:
            self.addresses.setdefault(kind, []).append((host, port))

    async def _stop(self) -> None:
        for server in self._servers:
            await server.stop()
        assert self._context is not None
        await self._context.store.close()


class LmtpClient:
    """A raw-socket LMTP client: send bytes, read whole replies (multi-line ones joined)."""

    def __init__(self, address: tuple[str, int] | str) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        try:
            self.sock.connect(address)
            self._file = self.sock.makefile("rb")
            self.greeting = self.reply()
        except BaseException:
            self.sock.close()  # a server killed mid-greeting (tests/ops/torture.py)
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One reply; the lines of a multi-line reply joined by newlines."""
        lines = []
        while True:
            raw = self._file.readline(4096)
            assert raw.endswith(b"\r\n"), f"connection closed mid-reply: {raw!r}"
            line = raw[:-2].decode("utf-8")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def command(self, line: str) -> str:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self._file.close()
        self.sock.close()


def lmtp_transaction(
    address: tuple[str, int] | str,
    recipients: list[str],
    message: bytes,
    *,
    sender: str = "sender@example.org",
    mail_params: str = "",
) -> tuple[list[str], list[str]]:
    """One LHLO/MAIL/RCPT.../DATA exchange: (RCPT replies, DATA replies).

    After the data, exactly one reply per accepted RCPT is read (RFC 2033 s4.2), then
    a NOOP checks that nothing more was queued.
    """
    client = LmtpClient(address)
    try:
        assert client.command("LHLO client.test").startswith("250")
        assert client.command(f"MAIL FROM:<{sender}>{mail_params}").startswith("250")
        rcpt = [client.command(f"RCPT TO:<{r}>") for r in recipients]
        accepted = sum(reply.startswith("250") for reply in rcpt)
        if not accepted:
            return rcpt, []
        assert client.command("DATA").startswith("354")
        client.send(stuff(message) + b".\r\n")
        data = [client.reply() for _ in range(accepted)]
        assert client.command("NOOP").startswith("250 2.0.0"), "an extra reply was queued"
        client.command("QUIT")
        return rcpt, data
    finally:
        client.close()


def stuff(message: bytes) -> bytes:
    """RFC 5321 s4.5.2 dot-transparency, and a final CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def pop3_retrieve(server: MailServer, name: str) -> list[bytes]:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        client.user(name)
        client.pass_(PASSWORD)
        count, _ = client.stat()
        return [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    finally:
        client.quit()


def split_trace(message: bytes) -> tuple[list[bytes], bytes]:
    """(the three trace header fields, what follows them)."""
    lines = message.split(b"\r\n")
    assert lines[0].startswith(b"Return-Path: ")
    assert lines[1].startswith(b"Delivered-To: ")
    assert lines[2].startswith(b"Received: ")
    end = 3
    while lines[end].startswith(b"\t"):
        end += 1
    return lines[:end], b"\r\n".join(lines[end:])
