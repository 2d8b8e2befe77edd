"""The load generator's clients: POP3 and LMTP exchanges, every answer checked.

Theory of operation: a scenario is described by a ``Spec`` (server address, users,
how many connections, when to start and for how long); ``run_spec`` runs one process's
share of it on the running event loop and returns a ``Result``.  ``clients.py`` runs
it in several client processes at once and merges their results.

Every exchange is checked: status lines must be +OK, STAT must count the provisioned
messages, LIST must give their sizes and every RETR must return exactly the octets that
were delivered (``payload.wire_form``).  A mismatch counts as an error and the first one
is kept for the report; a benchmark of wrong answers measures nothing.

The ``idle`` scenario has two phases: open and log in ``sessions`` connections, report
``ready`` and wait; when the parent has measured the server, it says ``check`` and every
session must still answer NOOP before it QUITs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import payload

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from multiprocessing.connection import Connection

__all__ = ["Pop3Client", "Result", "Spec", "run_spec"]

READ_LIMIT = 1 << 24  # the largest LIST/UIDL reply read in one piece
IDLE_CONNECT_BATCH = 64  # logins in flight per process while idle sessions are opened


class ProtocolMismatch(Exception):
    """The server's answer was not the one the provisioned data requires."""


@dataclass(slots=True)
class Spec:
    scenario: str  # login | paced_login | retr | biglist | idle | deliver
    host: str
    port: int
    users: list[str]
    kind: str  # key of payload.MAILBOXES
    count: int  # messages per provisioned mailbox
    tls: bool = False
    concurrency: int = 1  # connections in flight in this process
    sessions: int = 0  # idle: sessions to hold open in this process
    start_at: float = 0.0  # wall clock (time.time) at which every process starts
    duration: float = 1.0
    timeout: float = 60.0  # per session, so a stuck server cannot hang the run
    rate: float = 0.0  # paced_login: logins started per second in this process


@dataclass(slots=True)
class Result:
    ops: int = 0
    octets: int = 0
    errors: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cipher: str = ""

    def merge(self, other: Result) -> None:
        self.ops += other.ops
        self.octets += other.octets
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.latencies.extend(other.latencies)
        self.elapsed = max(self.elapsed, other.elapsed)
        self.cipher = self.cipher or other.cipher

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


def client_tls() -> ssl.SSLContext:
    # The bench servers present a self-signed certificate; privacy, not identity, is
    # what is being measured, and both servers get the same client context.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Pop3Client:
    """A minimal POP3 client: one command at a time, every reply checked."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, tls: ssl.SSLContext | None) -> Pop3Client:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=READ_LIMIT)
        client = cls(reader, writer)
        await client.status()  # the greeting
        return client

    async def status(self) -> bytes:
        line = await self.reader.readline()
        if not line.startswith(b"+OK"):
            raise ProtocolMismatch(f"expected +OK, got {line[:120]!r}")
        return line

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.status()

    async def login(self, user: str) -> None:
        self.writer.write(f"USER {user}\r\n".encode())
        await self.status()
        await self.command(f"PASS {payload.password(user)}".encode())

    async def stat(self, count: int) -> int:
        parts = (await self.command(b"STAT")).split()
        if int(parts[1]) != count:
            raise ProtocolMismatch(f"STAT counts {parts[1]!r} messages, expected {count}")
        return int(parts[2])

    async def listing(self, command: bytes) -> list[bytes]:
        """A multi-line reply's lines, status line excluded (none here is stuffed)."""
        self.writer.write(command + b"\r\n")
        # An empty listing is "+OK ...\r\n.\r\n": the status line's CRLF closes it too.
        data = await self.reader.readuntil(b"\r\n.\r\n")
        if not data.startswith(b"+OK"):
            raise ProtocolMismatch(f"{command!r} answered {data[:120]!r}")
        return data.split(b"\r\n")[1:-2]

    async def retr(self, msg: int, expected: bytes) -> None:
        self.writer.write(b"RETR %d\r\n" % msg)
        await self.status()
        got = await self.reader.readexactly(len(expected))
        if got != expected:
            at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
            raise ProtocolMismatch(f"RETR {msg} differs from the delivered message at {at}")

    async def quit(self) -> None:
        await self.command(b"QUIT")
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    def abort(self) -> None:
        self.writer.transport.abort()

    def cipher(self) -> str:
        info = self.writer.get_extra_info("cipher")
        return f"{info[1]} {info[0]}" if info else "plain"


# -- scenarios ---------------------------------------------------------------------------


async def _login_loop(spec: Spec, result: Result, worker: int, tls: ssl.SSLContext | None):
    deadline = spec.start_at + spec.duration
    n = worker
    while time.time() < deadline:
        user = spec.users[n % len(spec.users)]
        n += spec.concurrency
        began = time.perf_counter()
        if await _login_once(spec, result, user, tls):
            result.latencies.append(time.perf_counter() - began)


async def _login_once(spec: Spec, result: Result, user: str, tls: ssl.SSLContext | None) -> bool:
    """One whole login session (USER, PASS, STAT, QUIT); False when it failed."""
    client = None
    try:
        async with asyncio.timeout(spec.timeout):
            client = await Pop3Client.connect(spec.host, spec.port, tls)
            await client.login(user)
            await client.stat(spec.count)
            await client.quit()
    except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
        result.fail(exc)
        if client is not None:
            client.abort()
        return False
    result.ops += 1
    return True


async def _paced_logins(spec: Spec, result: Result, tls: ssl.SSLContext | None) -> None:
    """Start a login every 1/rate s whatever the server does (an open loop).

    Each login's latency runs from the moment it was due, not from when it began: a
    server that falls behind is charged the wait, as a user would be (a closed loop
    leaves that wait out, "coordinated omission").  At most ``concurrency`` run at once;
    a login due while that many are in flight is counted as a failure.
    """
    if spec.rate <= 0:
        return
    loop = asyncio.get_running_loop()
    interval = 1.0 / spec.rate
    origin = loop.time()
    running: set[asyncio.Task[None]] = set()
    for n in range(int(spec.duration * spec.rate)):
        due = origin + n * interval
        await asyncio.sleep(max(0.0, due - loop.time()))
        if len(running) >= spec.concurrency:
            result.fail(TimeoutError(f"{len(running)} logins in flight at the pace's bound"))
            continue
        user = spec.users[n % len(spec.users)]
        task = loop.create_task(_paced_login(spec, result, user, tls, due))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running)


async def _paced_login(
    spec: Spec, result: Result, user: str, tls: ssl.SSLContext | None, due: float
) -> None:
    if await _login_once(spec, result, user, tls):
        result.latencies.append(asyncio.get_running_loop().time() - due)


def _expected_wire(spec: Spec, user: str) -> list[bytes]:
    kind = payload.MAILBOXES[spec.kind]
    return [payload.wire_form(m) for m in payload.mailbox(kind, user, spec.count)]


async def _retr_loop(
    spec: Spec, result: Result, user: str, expected: list[bytes], tls: ssl.SSLContext | None
) -> None:
    deadline = spec.start_at + spec.duration
    while time.time() < deadline:
        client = None
        try:
            async with asyncio.timeout(spec.timeout):
                client = await Pop3Client.connect(spec.host, spec.port, tls)
                result.cipher = client.cipher()
                await client.login(user)
                await client.stat(spec.count)
                for msg, wire in enumerate(expected, 1):
                    if time.time() >= deadline:
                        break
                    await client.retr(msg, wire)
                    result.ops += 1
                    result.octets += len(wire)
                await client.quit()
        except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
            result.fail(exc)
            if client is not None:
                client.abort()


async def _biglist_once(spec: Spec, result: Result, tls: ssl.SSLContext | None) -> None:
    kind = payload.MAILBOXES[spec.kind]
    user = spec.users[0]
    last = b"%d %d" % (spec.count, len(payload.make_message(kind, user, spec.count - 1)))
    began = time.perf_counter()
    async with asyncio.timeout(spec.timeout):
        client = await Pop3Client.connect(spec.host, spec.port, tls)
        await client.login(user)
        await client.stat(spec.count)
        scan = await client.listing(b"LIST")
        uidl = await client.listing(b"UIDL")
        await client.quit()
    result.latencies.append(time.perf_counter() - began)
    if len(scan) != spec.count or len(uidl) != spec.count:
        raise ProtocolMismatch(f"LIST gave {len(scan)} and UIDL {len(uidl)} lines")
    if scan[-1] != last:
        raise ProtocolMismatch(f"last scan line {scan[-1]!r} does not match the mailbox")
    result.ops += 1


async def _biglist_loop(spec: Spec, result: Result, tls: ssl.SSLContext | None) -> None:
    deadline = spec.start_at + spec.duration
    while True:
        try:
            await _biglist_once(spec, result, tls)
        except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
            result.fail(exc)
        if time.time() >= deadline:
            return


async def _lmtp_reply(reader: asyncio.StreamReader, code: bytes) -> None:
    """Read one (possibly multi-line) reply; it must carry ``code``."""
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise ProtocolMismatch(f"expected {code!r}, got {line[:120]!r}")
        if line[3:4] != b"-":
            return


async def _deliver_loop(spec: Spec, result: Result, worker: int) -> None:
    """LMTP: one connection, then MAIL/RCPT/DATA transactions until the deadline."""
    deadline = spec.start_at + spec.duration
    kind = payload.MAILBOXES[spec.kind]
    n = worker
    writer = None
    try:
        async with asyncio.timeout(spec.duration + spec.timeout):
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
            await _lmtp_reply(reader, b"220")
            writer.write(b"LHLO bench.example\r\n")
            await _lmtp_reply(reader, b"250")
            while time.time() < deadline:
                user = spec.users[n % len(spec.users)]
                data = payload.wire_form(payload.make_message(kind, user, n))
                n += spec.concurrency
                began = time.perf_counter()
                writer.write(b"MAIL FROM:<bench@bench.example>\r\n")
                writer.write(f"RCPT TO:<{user}@bench.example>\r\nDATA\r\n".encode())
                await _lmtp_reply(reader, b"250")
                await _lmtp_reply(reader, b"250")
                await _lmtp_reply(reader, b"354")
                writer.write(data)
                await _lmtp_reply(reader, b"250")  # one reply per accepted recipient
                result.latencies.append(time.perf_counter() - began)
                result.ops += 1
                result.octets += len(data)
            writer.write(b"QUIT\r\n")
            await _lmtp_reply(reader, b"221")
    except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
        result.fail(exc)
    finally:
        if writer is not None:
            writer.close()


async def _idle(spec: Spec, result: Result, control: Connection | None) -> None:
    """Open ``spec.sessions`` logged-in sessions, hold them, then NOOP each and QUIT."""
    tls = client_tls() if spec.tls else None
    clients: list[Pop3Client] = []
    gate = asyncio.Semaphore(IDLE_CONNECT_BATCH)

    async def open_one(n: int) -> None:
        async with gate:
            try:
                async with asyncio.timeout(spec.timeout):
                    client = await Pop3Client.connect(spec.host, spec.port, tls)
                    await client.login(spec.users[n % len(spec.users)])
                    await client.command(b"NOOP")
                clients.append(client)
            except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
                result.fail(exc)

    began = time.perf_counter()
    await asyncio.gather(*(open_one(n) for n in range(spec.sessions)))
    result.elapsed = time.perf_counter() - began
    if control is not None:
        control.send(("ready", len(clients)))
        await asyncio.get_running_loop().run_in_executor(None, control.recv)

    async def check(client: Pop3Client) -> None:
        async with gate:
            try:
                async with asyncio.timeout(spec.timeout):
                    await client.command(b"NOOP")
                    await client.quit()
                result.ops += 1
            except (OSError, EOFError, TimeoutError, ProtocolMismatch, ValueError) as exc:
                result.fail(exc)
                client.abort()

    await asyncio.gather(*(check(c) for c in clients))


async def run_spec(spec: Spec, control: Connection | None = None) -> Result:
    """Run one process's share of a scenario on the running loop."""
    result = Result()
    tls = client_tls() if spec.tls else None
    # Built before the start so that only the exchanges are timed.
    retr_users = [spec.users[w % len(spec.users)] for w in range(spec.concurrency)]
    wires = {u: _expected_wire(spec, u) for u in retr_users} if spec.scenario == "retr" else {}
    delay = spec.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    began = time.perf_counter()
    jobs: list[Awaitable[None]]
    if spec.scenario == "idle":
        await _idle(spec, result, control)
        return result
    if spec.scenario == "login":
        jobs = [_login_loop(spec, result, w, tls) for w in range(spec.concurrency)]
    elif spec.scenario == "paced_login":
        jobs = [_paced_logins(spec, result, tls)]
    elif spec.scenario == "retr":
        jobs = [_retr_loop(spec, result, u, wires[u], tls) for u in retr_users]
    elif spec.scenario == "deliver":
        jobs = [_deliver_loop(spec, result, w) for w in range(spec.concurrency)]
    elif spec.scenario == "biglist":
        jobs = [_biglist_loop(spec, result, tls)]
    else:
        raise ValueError(f"unknown scenario {spec.scenario!r}")
    await asyncio.gather(*jobs)
    result.elapsed = time.perf_counter() - began
    return result
