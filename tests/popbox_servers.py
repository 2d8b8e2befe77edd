"""Real popbox servers for tests: one in this process on its own thread, one as a process.

Theory of operation: ``InProcessServer`` runs ``app.build_context`` + ``app.start_servers``
on an event loop in a background thread, so a test can drive it with blocking clients
(poplib, subprocess) from its own thread and still reach into the store through
``call``.  ``ServeProcess`` runs the real ``popbox serve --config FILE`` and reads the
``listening KIND HOST:PORT`` lines it prints, for the few tests that need the command
itself (signals, the CLI, the demo).  Both bind 127.0.0.1 port 0 only.

Certificates come from a trustme CA, so clients verify the server for real.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trustme

from popbox.auth.passwords import verifiers_for
from popbox.config import from_mapping
from popbox.node import app
from popbox.observability.log import make_logger
from popbox.store import open_store
from popbox.store.message import normalise, prepare

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping
    from pathlib import Path

    from popbox.clock import ManualClock
    from popbox.config import Config
    from popbox.server.context import ServerContext
    from popbox.server.listener import Pop3Server
    from popbox.server.session import Pop3Protocol
    from popbox.server.stage import Stage
    from popbox.store.base import MailStore, MessageInfo

__all__ = [
    "USERS",
    "Delivered",
    "InProcessServer",
    "LogSink",
    "ServeProcess",
    "TlsFiles",
    "config_mapping",
    "make_tls_files",
    "provision",
    "run_loop",
    "toml_text",
]

# Passwords with a space: PASS takes the rest of the line (V0011).
_T = TypeVar("_T")

USERS: Mapping[str, str] = {"alice": "alice secret", "bob": "bob-password"}
CALL_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA and a server certificate for ``localhost`` and ``127.0.0.1`` it issued."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls_files(directory: Path) -> TlsFiles:
    ca = trustme.CA()
    # A subject CN as well as the SANs: fetchmail refuses a certificate without one.
    cert = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_file), append=True)
    cert.private_key_pem.write_to_path(str(files.key_file))
    return files


def config_mapping(
    data_dir: Path,
    tls: TlsFiles,
    pop3: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A configuration on ephemeral loopback ports.

    ``pop3`` overrides keys of the ``[pop3]`` section; ``sections`` adds whole other
    sections, e.g. ``{"auth": {"ip_lockout_failures": 0}}``.
    """
    return {
        **(sections or {}),
        "data_dir": str(data_dir),
        "pop3": {
            "listen": ["127.0.0.1:0"],
            "tls_listen": ["127.0.0.1:0"],
            "auth_failure_delay": 0.05,
            "shutdown_grace": 0.5,
            **(pop3 or {}),
        },
        "tls": {"cert_file": str(tls.cert_file), "key_file": str(tls.key_file)},
        "lmtp": {"listen": ["127.0.0.1:0"]},
    }


def toml_text(mapping: Mapping[str, Any]) -> str:
    """The few TOML shapes ``config_mapping`` produces (scalars, string lists, tables)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    top = [f"{k} = {value(v)}" for k, v in mapping.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
        for k, v in mapping.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


@functools.cache
def _verifiers(password: str) -> dict[str, str]:
    return verifiers_for(password)  # hashing costs tens of ms; once per test run is enough


@dataclass(frozen=True, slots=True)
class Delivered:
    """One delivered message: what the store assigned, and what RETR must give back."""

    info: MessageInfo
    text: bytes  # normalised (CRLF) message, before byte-stuffing


async def provision_store(
    store: MailStore, users: Mapping[str, str], messages: Mapping[str, list[bytes]]
) -> dict[str, list[Delivered]]:
    for name, password in users.items():
        await store.add_user(name, _verifiers(password))
    delivered: dict[str, list[Delivered]] = {}
    for name, raws in messages.items():
        for raw in raws:
            info = await store.deliver(name, prepare(raw))
            delivered.setdefault(name, []).append(Delivered(info, normalise(raw)))
    return delivered


def provision(
    data_dir: Path, users: Mapping[str, str], messages: Mapping[str, list[bytes]]
) -> dict[str, list[Delivered]]:
    """Create users and deliver messages into the SQLite store in ``data_dir`` (no server)."""

    async def run() -> dict[str, list[Delivered]]:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            return await provision_store(store, users, messages)
        finally:
            await store.close()

    return asyncio.run(run())


class LogSink(io.TextIOBase):
    """Collects the server's JSON log lines; written from the server thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The parsed log lines, or only the ``name`` events."""
        found = [json.loads(line) for line in self.text().splitlines() if line.strip()]
        return [e for e in found if name is None or e.get("event") == name]


@dataclass
class InProcessServer:
    """A popbox server on its own event-loop thread, with a SQLite store in ``data_dir``."""

    config: Config
    tls: TlsFiles
    log: LogSink = field(default_factory=LogSink)
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _context: ServerContext | None = None
    _servers: list[Pop3Server] = field(default_factory=list)
    clock: ManualClock | None = None  # time moves only by ``advance`` when given

    @classmethod
    def start(
        cls,
        data_dir: Path,
        tls: TlsFiles,
        pop3: Mapping[str, Any] | None = None,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        clock: ManualClock | None = None,
    ) -> InProcessServer:
        server = cls(from_mapping(config_mapping(data_dir, tls, pop3, sections)), tls, clock=clock)
        server._thread = threading.Thread(target=server._thread_main, name="popbox-test-server")
        server._thread.start()
        try:
            server.call(server._start())
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def host(self) -> str:
        return self.addresses["pop3"][0][0]

    @property
    def port(self) -> int:
        """The plain listener (STLS available)."""
        return self.addresses["pop3"][0][1]

    @property
    def tls_port(self) -> int:
        """The implicit-TLS listener."""
        return self.addresses["pop3s"][0][1]

    @property
    def store(self) -> MailStore:
        assert self._context is not None
        return self._context.store

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = CALL_TIMEOUT) -> _T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add_users(self, users: Mapping[str, str] = USERS) -> None:
        self.call(provision_store(self.store, users, {}))

    def deliver(self, user: str, *raws: bytes) -> list[Delivered]:
        """Deliver as ``popbox deliver`` does: ``message.prepare`` then ``store.deliver``."""
        return self.call(provision_store(self.store, {}, {user: list(raws)})).get(user, [])

    def uids(self, user: str) -> list[int]:
        return [info.uid for info in self.call(self.store.snapshot(user))]

    def errors(self) -> list[dict[str, Any]]:
        """Log events at warning level or above (a crashed session logs an error)."""
        return [e for e in self.log.events() if e.get("level") in {"warning", "error", "critical"}]

    def session_count(self) -> int:
        assert self._context is not None
        return len(self._context.sessions)

    def sessions(self) -> list[Pop3Protocol]:
        """The live sessions (call their methods on the server's loop, with ``call``)."""
        assert self._context is not None
        return list(self._context.sessions)

    def stages(self) -> list[Stage]:
        """The lifecycle stage of every live session."""

        async def look() -> list[Stage]:
            return [session.stage for session in self.sessions()]

        return self.call(look())

    def blocked(self) -> list[bool]:
        """For every live session: is its client not taking its replies?"""

        async def look() -> list[bool]:
            return [session.output_blocked for session in self.sessions()]

        return self.call(look())

    def advance(self, seconds: float) -> int:
        """Move the manual clock on, on the server's loop; returns how many timers fired."""
        clock = self.clock
        assert clock is not None, "start the server with clock=ManualClock()"

        async def move() -> int:
            fired = clock.advance(seconds)
            await asyncio.sleep(0)  # let what the timers woke run
            return fired

        return self.call(move())

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(CALL_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._thread = None

    async def _start(self) -> None:
        log = make_logger(json=True, stream=self.log)
        self._context = await app.build_context(self.config, log=log, clock=self.clock)
        self._servers, listening = await app.start_servers(self._context)
        for kind, host, port in listening:
            self.addresses.setdefault(kind, []).append((host, port))

    async def _stop(self) -> None:
        for server in self._servers:
            await server.stop()
        if self._context is not None:
            await self._context.store.close()

    def _thread_main(self) -> None:
        run_loop(self._loop)


def run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Run ``loop`` on this thread until stopped, then cancel what is left and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def popbox_executable() -> str:
    """The ``popbox`` console script of the interpreter running the tests."""
    beside = os.path.join(os.path.dirname(sys.executable), "popbox")  # noqa: PTH118, PTH120
    found = beside if os.access(beside, os.X_OK) else shutil.which("popbox")
    assert found, "the popbox command is not installed: run scripts/setup"
    return found


class ServeProcess:
    """``popbox ARGS...`` as a child process whose stdout is read line by line."""

    def __init__(
        self, args: list[str], *, cwd: Path, stderr_path: Path, own_group: bool = False
    ) -> None:
        """``own_group``: in a process group of its own, for a test that kills the group."""
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.process = subprocess.Popen(
            [popbox_executable(), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            process_group=0 if own_group else None,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.output: list[str] = []
        self._sigterm_sent = False
        self.addresses: dict[str, list[tuple[str, int]]] = {}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def wait_for_listeners(self, kinds: set[str], timeout: float = 15.0) -> None:
        """Read stdout until a ``listening KIND HOST:PORT`` line was seen for each kind.

        A server that never gets there is stopped and its files closed before the test
        fails, so nothing it left open is reported later against another test.
        """
        try:
            self._wait_for_listeners(kinds, timeout)
        except BaseException:
            self.close()
            raise

    def _wait_for_listeners(self, kinds: set[str], timeout: float) -> None:
        while not kinds <= self.addresses.keys():
            line = self.next_line(timeout)
            assert line is not None, f"popbox exited before listening: {self.stderr()}"
            parts = line.split()
            if len(parts) == 3 and parts[0] == "listening":
                host, _, port = parts[2].rpartition(":")
                if port.isdigit():  # "listening lmtp unix:/path" has no port
                    self.addresses.setdefault(parts[1], []).append((host, int(port)))

    def next_line(self, timeout: float = 15.0) -> str | None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"popbox printed nothing for {timeout} s: {self.stderr()}"
            ) from None
        if line is not None:
            self.output.append(line)
        return line

    def port(self, kind: str) -> int:
        return self.addresses[kind][0][1]

    def send_sigterm(self) -> None:
        """Ask for a graceful stop, once: a second SIGTERM during the drain may kill it."""
        if not self._sigterm_sent and self.process.poll() is None:
            self._sigterm_sent = True
            self.process.send_signal(signal.SIGTERM)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (unless sent already), then the exit status; fails if it does not stop."""
        self.send_sigterm()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
            raise AssertionError(f"popbox did not stop on SIGTERM: {self.stderr()}") from None

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(15)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
