"""A real popbox server for the authentication tests, with any [auth] settings.

``auth_server(auth={...}, pop3={...})`` starts ``app.build_context`` + ``app.start_servers``
on an event loop in a background thread (a MemoryStore, a trustme certificate, loopback
port 0), so tests drive it with blocking clients: raw sockets, poplib, curl, mpop.
The server's JSON log is kept, so tests can check what was (and was not) logged.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trustme

from popbox.auth.passwords import Argon2Params, PasswordVerifier, verifiers_for
from popbox.auth.registry import build_registry
from popbox.config import from_mapping
from popbox.directory.factory import DirectoryDeps, build_chain
from popbox.node import app
from popbox.observability.log import make_logger
from popbox.store.memory import MemoryStore
from popbox_servers import LogSink, run_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Mapping
    from pathlib import Path

    from popbox.config import Config
    from popbox.server.context import ServerContext
    from popbox.server.listener import Pop3Server

_T = TypeVar("_T")
TIMEOUT = 20.0
# Cheap argon2id so that tests which log in many times stay fast; same code path.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024)


@dataclass
class AuthServer:
    config: Config
    ca: trustme.CA
    params: Argon2Params = FAST_ARGON2
    store: MemoryStore = field(default_factory=MemoryStore)
    log: LogSink = field(default_factory=LogSink)
    ports: dict[str, int] = field(default_factory=dict)
    context: ServerContext | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _servers: list[Pop3Server] = field(default_factory=list)
    _clients: list[Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.ports["pop3"]

    @property
    def tls_port(self) -> int:
        return self.ports["pop3s"]

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    def add_user(self, name: str, password: str) -> None:
        verifiers = verifiers_for(password, self.params, auth=self.config.auth)
        self.call(self.store.add_user(name, verifiers))

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def connect(self, *, tls: bool = False) -> Client:
        sock = socket.create_connection(("127.0.0.1", self.tls_port if tls else self.port), 10)
        sock.settimeout(10)
        if tls:
            sock = self.client_context().wrap_socket(sock, server_hostname="localhost")
        client = Client(sock)
        self._clients.append(client)  # closed by stop(): tests need not
        return client

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="popbox-auth-test")
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self._thread is None:
            return
        self.call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._thread = None

    async def _start(self) -> None:
        log = make_logger(json=True, stream=self.log)
        self.context = await app.build_context(self.config, store=self.store, log=log)
        # The server's configured parameters are the ones add_user hashes with: any other
        # stored hash would be padded to them and rehashed at login.
        self.context.passwords = PasswordVerifier(self.params)
        self.context.registry = build_registry(self.config, passwords=self.context.passwords)
        deps = DirectoryDeps(
            self.context.store, self.context.passwords, log, self.context.clock, self.config
        )
        self.context.directories = build_chain(deps)
        self._servers, listening = await app.start_servers(self.context)
        for kind, _host, port in listening:
            self.ports.setdefault(kind, port)

    async def _stop(self) -> None:
        for server in self._servers:
            await server.stop()

    def _run(self) -> None:
        run_loop(self._loop)


class Client:
    """A raw-socket POP3 client: exact bytes out, lines back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._file = sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        line = self._file.readline(70000)
        assert line.endswith(b"\r\n"), f"no complete line: {line!r}"
        return line

    def ask(self, data: bytes) -> bytes:
        self.send(data)
        return self.line()

    def multiline(self) -> list[bytes]:
        lines = []
        for _ in range(1000):
            line = self.line()
            if line == b".\r\n":
                return lines
            lines.append(line)
        raise AssertionError("no end of the multi-line reply")

    def closed(self) -> bool:
        return self._file.read(1) == b""

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def start_tls(self, context: ssl.SSLContext) -> None:
        self._file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self._file = self.sock.makefile("rb")


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA
) -> Iterator[Callable[..., AuthServer]]:
    """Factory: ``auth_server(auth={...}, pop3={...}, sections={...})`` returns a started
    server; ``sections`` adds top-level keys (``[[directory]]``, ``[names]``)."""
    started: list[AuthServer] = []

    def start(
        auth: Mapping[str, Any] | None = None,
        pop3: Mapping[str, Any] | None = None,
        *,
        params: Argon2Params = FAST_ARGON2,
        sections: Mapping[str, Any] | None = None,
    ) -> AuthServer:
        data_dir: Path = tmp_path_factory.mktemp("auth-data")
        leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
        cert, key = data_dir / "cert.pem", data_dir / "key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        config = from_mapping(
            {
                "data_dir": str(data_dir),
                "pop3": {
                    "listen": ["127.0.0.1:0"],
                    "tls_listen": ["127.0.0.1:0"],
                    "auth_failure_delay": 0.0,
                    "shutdown_grace": 0.2,
                    **(pop3 or {}),
                },
                "tls": {"cert_file": str(cert), "key_file": str(key)},
                "lmtp": {"listen": ["127.0.0.1:0"]},
                "auth": dict(auth or {}),
                **(sections or {}),  # e.g. {"directory": [...], "names": {...}}
            }
        )
        server = AuthServer(config, ca, params)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        errors = [e for e in server.log.events() if e.get("level") in {"error", "critical"}]
        assert not errors, f"the server logged errors: {errors}"
