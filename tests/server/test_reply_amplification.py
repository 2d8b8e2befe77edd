"""Hostile pipelining and slow readers against a real ``popbox serve`` (issue 15, items 9, 10).

A client that pipelines a flood of cheap commands (2 MiB of CAPA before login, 40,000
UIDLs on a 1,000-message maildrop) and never reads, or twenty clients that each ask for a
50 MiB message and never read, must neither freeze the worker nor make it grow without
limit: another logged-in session's NOOP is answered within 50 ms throughout, and the
serving process's memory grows by no more than the README's figures ("Memory under
hostile clients"): a few MiB for the floods, ``server.memory_budget`` plus a little for
the stalled downloads.  RFC 2449 section 6.6 (PIPELINING) lets clients send commands
without waiting; nothing says the server must answer faster than they read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from popbox.store import open_store
from popbox.store.message import prepare
from popbox_servers import USERS, ServeProcess, config_mapping, provision, toml_text

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from popbox_servers import TlsFiles

MIB = 1024 * 1024
NOOP_WITHIN = 0.050  # seconds: the bound on another session's round trip
FLOOD_GROWTH = 8 * MIB  # what one flooding connection may add to the process
BUDGET = 256 * MIB  # server.memory_budget's default
BUDGET_SLACK = 64 * MIB  # interpreter, SQLite's cache, socket buffers, one slice each
TIMEOUT = 15.0


def _message(number: int) -> bytes:
    return f"Subject: message {number}\r\n\r\nbody {number}\r\n".encode()


def _big(size: int) -> bytes:
    return b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80)


def _import(data_dir: Path, user: str, raws: list[bytes]) -> None:
    """Store ``raws`` for ``user`` in one transaction (a delivery each would take minutes)."""

    async def run() -> None:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            await store.import_messages(user, [prepare(raw) for raw in raws])
        finally:
            await store.close()

    asyncio.run(run())


@pytest.fixture
def serve(tmp_path: Path, tls_files: TlsFiles) -> Iterator[ServeProcess]:
    """``popbox serve`` with one worker (one process to measure); alice has one message."""
    data_dir = tmp_path / "data"
    provision(data_dir, USERS, {"alice": [_message(0)]})
    pop3 = {"login_type": "plaintext_login"}
    mapping = config_mapping(data_dir, tls_files, pop3, {"server": {"workers": 1}})
    config = tmp_path / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    try:
        yield process
    finally:
        process.close()


def _start(process: ServeProcess) -> None:
    process.wait_for_listeners({"pop3"})


def _rss(process: ServeProcess) -> int:
    """Octets of the serving process's own resident memory (anonymous: heap, buffers).

    Not the file pages it maps: SQLite reads through mmap, and each connection of its
    read pool maps the same database pages, which the kernel shares and may reclaim.
    """
    with open(f"/proc/{process.process.pid}/status", encoding="ascii") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/PID/status")


class Session:
    """A blocking POP3 client that logs in with USER/PASS."""

    def __init__(self, process: ServeProcess, user: str | None, *, receive_buffer: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        if receive_buffer:  # before connect: it bounds the advertised window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(process.addresses["pop3"][0])
        self.file = self.sock.makefile("rb")
        if user is not None:
            assert self.file.readline().startswith(b"+OK")
            self.sock.sendall(f"USER {user}\r\nPASS {USERS[user]}\r\n".encode())
            assert self.file.readline() == b"+OK send PASS\r\n"
            assert self.file.readline().startswith(b"+OK logged in")

    def noop_seconds(self) -> float:
        started = time.perf_counter()
        self.sock.sendall(b"NOOP\r\n")
        assert self.file.readline() == b"+OK\r\n"
        return time.perf_counter() - started

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _push(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send as much of ``data`` as the server takes, never reading; until ``stop``."""
    view = memoryview(data)
    sock.setblocking(False)
    while view and not stop.is_set():
        try:
            view = view[sock.send(view[: 64 * 1024]) :]
        except BlockingIOError:
            stop.wait(0.005)  # the server stopped reading: that is the point


@dataclass
class Watch:
    """What a logged-in observer saw: NOOP round trips, and the server's largest RSS."""

    times: list[float] = field(default_factory=list)
    peak: int = 0

    def check(self, before: int, growth: int) -> None:
        self.check_memory(before, growth)
        self.check_latency()

    def check_memory(self, before: int, growth: int) -> None:
        grew = self.peak - before
        assert grew < growth, f"the process grew by {grew / MIB:.1f} MiB"

    def check_latency(self) -> None:
        """Every few ms a NOOP answered within NOOP_WITHIN.

        The 99th percentile is held to the bound, so that one scheduler hiccup on a loaded
        machine is not taken for a stall; a stall of the worker shows as slow NOOPs and as
        too few of them (one NOOP waits out the whole freeze).
        """
        assert len(self.times) >= 50, f"{len(self.times)} NOOPs answered: the worker stalled"
        slow = sorted(self.times)[int(len(self.times) * 0.99)]
        assert slow < NOOP_WITHIN, f"NOOP took {slow * 1000:.0f} ms (99th percentile)"


def _watch(observer: Session, process: ServeProcess, seconds: float) -> Watch:
    """NOOP round trips of a logged-in session, one every few ms, for ``seconds``."""
    watch = Watch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        watch.times.append(observer.noop_seconds())
        watch.peak = max(watch.peak, _rss(process))
        time.sleep(0.005)
    return watch


@contextlib.contextmanager
def _flooding(process: ServeProcess, user: str | None, data: bytes) -> Iterator[None]:
    flooder = Session(process, user, receive_buffer=65536)
    stop = threading.Event()
    pusher = threading.Thread(target=_push, args=(flooder.sock, data, stop))
    pusher.start()
    try:
        yield
    finally:
        stop.set()
        pusher.join(TIMEOUT)
        flooder.close()


def _warm_up(process: ServeProcess, user: str | None, command: bytes) -> None:
    """The command a few times, answers read: what its first use loads stays loaded."""
    client = Session(process, user)
    if user is None:
        assert client.file.readline().startswith(b"+OK")
    client.sock.sendall(command * 20 + b"QUIT\r\n")
    while client.file.readline():
        pass
    client.close()


def _check_flood(process: ServeProcess, user: str | None, data: bytes) -> None:
    observer = Session(process, "alice")
    _warm_up(process, user, data[: data.index(b"\n") + 1])
    _watch(observer, process, 0.3)
    before = _rss(process)
    with _flooding(process, user, data):
        watch = _watch(observer, process, 2.0)
    observer.close()
    watch.check(before, FLOOD_GROWTH)


def test_capa_flood_before_login_neither_freezes_nor_grows_the_worker_rfc2449_s6_6(serve):
    """2 MiB of pipelined CAPA before login, never read (issue 15 item 9)."""
    _start(serve)
    _check_flood(serve, None, b"CAPA\r\n" * (2 * MIB // 6))


def test_uidl_flood_on_a_large_maildrop_neither_freezes_nor_grows_the_worker_rfc2449_s6_6(
    serve, tmp_path
):
    """40,000 pipelined UIDLs on a 1,000-message maildrop, never read (issue 15 item 9)."""
    _import(tmp_path / "data", "bob", [_message(n) for n in range(1000)])
    _start(serve)
    _check_flood(serve, "bob", b"UIDL\r\n" * 40_000)


def _stall_twenty(process: ServeProcess, data_dir: Path) -> tuple[int, Watch]:
    """Twenty sessions RETR a 50 MiB message and never read, while alice NOOPs."""
    _import(data_dir, "bob", [_big(50 * MIB - 1024)])
    _start(process)
    observer = Session(process, "alice")
    _watch(observer, process, 0.3)
    before = _rss(process)
    stalled = [Session(process, "bob", receive_buffer=65536) for _ in range(20)]
    try:
        for client in stalled:
            client.sock.sendall(b"RETR 1\r\n")
        return before, _watch(observer, process, 3.0)
    finally:
        for client in stalled:
            client.close()
        observer.close()


def test_twenty_stalled_50_mib_retrs_stay_within_the_memory_budget(serve, tmp_path):
    """Twenty clients RETR a 50 MiB message and never read (issue 15 item 10).

    The bodies being sent count against ``server.memory_budget``: the process grows by
    at most the budget and a little, not by 20 bodies and their copies.
    """
    before, watch = _stall_twenty(serve, tmp_path / "data")
    watch.check_memory(before, BUDGET + BUDGET_SLACK)


def test_twenty_stalled_50_mib_retrs_do_not_stall_other_sessions(serve, tmp_path):
    """Twenty clients RETR a 50 MiB message and never read: alice's NOOPs stay fast."""
    _, watch = _stall_twenty(serve, tmp_path / "data")
    watch.check_latency()
