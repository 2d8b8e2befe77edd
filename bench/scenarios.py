"""One function per scenario: drive one server once, return named measurements.

Each measurement is (name, value, unit, better) where ``better`` is "higher" or
"lower"; ``run.py`` takes medians over runs and divides popbox's by Dovecot's.  Server
CPU time per operation is reported beside each throughput: on a 2-core machine the
client processes compete with the server for the same cores, and CPU per operation
is the number that does not depend on how that contention falls out.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import clients

import loadgen
import procs

if TYPE_CHECKING:
    from servers import _Server

__all__ = [
    "Measurement",
    "Settings",
    "biglist",
    "deliver",
    "idle",
    "login",
    "paced_login",
    "retr",
]

MB = 1_000_000
# A paced login still running when this many are is a failure: the pace is over what
# the server can do, and the run says so instead of piling up connections.
PACED_IN_FLIGHT = 500


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    value: float
    unit: str
    better: str  # "higher" | "lower"


@dataclass(frozen=True, slots=True)
class Settings:
    clients: int  # client processes
    duration: float  # seconds per timed window
    login_concurrency: int
    retr_concurrency: int
    retr_busy_concurrency: int  # the 4 KiB RETRs again, with this many per client process
    idle_sessions: int
    login_users: list[str]
    retr_users: dict[str, list[str]]  # payload kind -> users
    big_user: str
    big_count: int
    login_count: int
    retr_counts: dict[str, int]
    deliver_users: list[str]
    deliver_concurrency: int


def _check(result: loadgen.Result, what: str, server: _Server) -> None:
    if result.errors:
        raise RuntimeError(
            f"{server.name} {what}: {result.errors} failed exchanges, first: {result.first_error}"
        )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def login(server: _Server, s: Settings) -> list[Measurement]:
    spec = loadgen.Spec(
        "login",
        "127.0.0.1",
        server.port,
        s.login_users,
        "login",
        s.login_count,
        concurrency=s.login_concurrency,
        duration=s.duration,
    )
    cpu = server.cpu_seconds()
    result = clients.run_parallel(spec, s.clients)
    cpu = server.cpu_seconds() - cpu
    _check(result, "login", server)
    return [
        Measurement("login: logins/s", result.ops / s.duration, "/s", "higher"),
        Measurement(
            "login: p99 latency", _percentile(result.latencies, 0.99) * 1000, "ms", "lower"
        ),
        Measurement("login: server CPU per login", cpu * 1000 / max(result.ops, 1), "ms", "lower"),
    ]


def paced_login(server: _Server, s: Settings, rate: float) -> list[Measurement]:
    """Logins started at ``rate`` per second (an open loop), with their latencies.

    Unlike ``login``, which keeps ``login_concurrency`` logins in flight and so runs
    every server at its limit, this offers both the same load, below what either can
    do: the latency a user sees on a busy server rather than on a saturated one.
    """
    spec = loadgen.Spec(
        "paced_login",
        "127.0.0.1",
        server.port,
        s.login_users,
        "login",
        s.login_count,
        concurrency=PACED_IN_FLIGHT,
        duration=s.duration,
        rate=rate,
    )
    result = clients.run_parallel(spec, s.clients)
    _check(result, f"login at {rate:.0f}/s", server)
    return [
        Measurement(
            f"login at {rate:.0f}/s: {label} latency",
            _percentile(result.latencies, fraction) * 1000,
            "ms",
            "lower",
        )
        for label, fraction in (("p50", 0.5), ("p99", 0.99))
    ]


def retr(
    server: _Server, s: Settings, kind: str, *, tls: bool, busy: bool = False
) -> list[Measurement]:
    # Settings give connections per client process; the spec's concurrency is the total,
    # which run_parallel deals out among the processes.
    connections = (s.retr_busy_concurrency if busy else s.retr_concurrency) * s.clients
    spec = loadgen.Spec(
        "retr",
        "127.0.0.1",
        server.tls_port if tls else server.port,
        s.retr_users[kind],
        kind,
        s.retr_counts[kind],
        tls=tls,
        concurrency=connections,
        duration=s.duration,
    )
    cpu = server.cpu_seconds()
    result = clients.run_parallel(spec, s.clients)
    cpu = server.cpu_seconds() - cpu
    load = f", {connections} connections," if busy else ""
    label = f"retr {kind[1:]}{load} {'tls' if tls else 'plain'}"
    _check(result, label, server)
    return [
        Measurement(f"{label}: MB/s", result.octets / MB / s.duration, "MB/s", "higher"),
        Measurement(
            f"{label}: server CPU per MB", cpu * 1000 / max(result.octets / MB, 1e-9), "ms", "lower"
        ),
    ]


def biglist(server: _Server, s: Settings) -> list[Measurement]:
    spec = loadgen.Spec(
        "biglist",
        "127.0.0.1",
        server.port,
        [s.big_user],
        "big",
        s.big_count,
        duration=s.duration,
    )
    result = clients.run_parallel(spec, 1)
    _check(result, "biglist", server)
    return [
        Measurement(
            "biglist: login+STAT+LIST+UIDL", _percentile(result.latencies, 0.5), "s", "lower"
        )
    ]


def deliver(server: _Server, s: Settings) -> list[Measurement]:
    spec = loadgen.Spec(
        "deliver",
        "127.0.0.1",
        server.lmtp_port,
        s.deliver_users,
        "dlv",
        0,
        concurrency=s.deliver_concurrency,
        duration=s.duration,
    )
    cpu = server.cpu_seconds()
    result = clients.run_parallel(spec, s.clients)
    cpu = server.cpu_seconds() - cpu
    _check(result, "deliver", server)
    return [
        Measurement("deliver: LMTP deliveries/s", result.ops / s.duration, "/s", "higher"),
        Measurement(
            "deliver: server CPU per delivery", cpu * 1000 / max(result.ops, 1), "ms", "lower"
        ),
    ]


def idle(server: _Server, s: Settings) -> list[Measurement]:
    # A fresh server, so that memory freed by earlier scenarios (popbox's allocator
    # keeps it) or mail processes kept for reuse (Dovecot) do not hide the cost.
    server.stop()
    server.start()
    login(server, dataclasses.replace(s, duration=0.3, login_concurrency=2))
    before = procs.footprint(server.pid)
    spec = loadgen.Spec(
        "idle",
        "127.0.0.1",
        server.port,
        s.login_users,
        "login",
        s.login_count,
        sessions=s.idle_sessions,
        timeout=300,
    )
    pool = clients.ClientProcesses(spec, s.clients)
    try:
        pool.start(0.0, clients.BOOT_TIMEOUT)
        opened = pool.wait_ready(timeout=900)
        time.sleep(1.0)  # let lazily freed memory and late children settle
        after = procs.footprint(server.pid)
        pool.release()
        result = pool.results(timeout=900)
    finally:
        pool.terminate()
    _check(result, "idle", server)
    if opened != s.idle_sessions or result.ops != opened:
        raise RuntimeError(f"{server.name} idle: {opened} opened, {result.ops} answered NOOP")
    return [
        Measurement(
            "idle: RSS per session", (after.rss_kib - before.rss_kib) / opened, "KiB", "lower"
        ),
        Measurement(
            "idle: PSS per session", (after.pss_kib - before.pss_kib) / opened, "KiB", "lower"
        ),
        Measurement("idle: server processes", after.processes, "", "lower"),
    ]
