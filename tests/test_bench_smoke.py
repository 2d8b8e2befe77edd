"""The benchmark's own code keeps working: its clients against an in-process popbox.

Not a timed test: it asserts that every exchange of every scenario succeeds and that
each did some work, never how fast.  The comparison with Dovecot is ``bench/run.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from pathlib import Path

import pytest

# bench/ is a directory of scripts that import each other, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import clients
import run

import loadgen
import payload
import provision
import scenarios
from popbox.auth.passwords import ARGON2ID
from popbox.config import from_mapping
from popbox.node import app
from popbox.server.tls import load_or_create_certificate
from popbox.store import open_store
from popbox.store.message import prepare

KIND = payload.MailboxKind("smoke", 3000, 6)


async def _server(tmp_path: Path):
    cert, key = load_or_create_certificate("", "", tmp_path / "tls")
    config = from_mapping(
        {
            "data_dir": str(tmp_path / "data"),
            "pop3": {
                "listen": ["127.0.0.1:0"],
                "tls_listen": ["127.0.0.1:0"],
                "login_type": "plaintext_login",
            },
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "lmtp": {"listen": ["127.0.0.1:0"]},
            # The cost of provision.hashes: configured, so logins are neither padded nor
            # rehashed to popbox's default cost.
            "auth": {
                "argon2_time_cost": provision.BENCH_ARGON2["time_cost"],
                "argon2_memory_kib": provision.BENCH_ARGON2["memory_cost"],
            },
        }
    )
    store = open_store("memory", data_dir=tmp_path, dsn="")
    await store.open()
    users = payload.users_of(KIND, 3)
    for user, phc in provision.hashes(users).items():
        await store.add_user(user, {ARGON2ID: phc})
        for text in payload.mailbox(KIND, user):
            await store.deliver(user, prepare(text))
    context = await app.build_context(config, store=store)
    servers, listening = await app.start_servers(context)
    ports = {kind: port for kind, _, port in listening}
    assert {"pop3", "pop3s", "lmtp"} <= ports.keys()
    return servers, ports, users


def _spec(scenario: str, port: int, users: list[str], **extra) -> loadgen.Spec:
    return loadgen.Spec(scenario, "127.0.0.1", port, users, "smoke", KIND.count, **extra)


@pytest.fixture(autouse=True)
def _smoke_kind(monkeypatch):
    monkeypatch.setitem(payload.MAILBOXES, "smoke", KIND)


async def test_bench_clients_complete_every_scenario_against_popbox(tmp_path):
    """Every scenario of the load generator runs without a failed or wrong exchange."""
    servers, ports, users = await _server(tmp_path)
    try:
        plain, tls = ports["pop3"], ports["pop3s"]
        runs = {
            "login": _spec("login", plain, users, concurrency=4, duration=0.3),
            "paced login": _spec(
                "paced_login", plain, users, concurrency=50, duration=0.5, rate=40.0
            ),
            "retr": _spec("retr", plain, users, concurrency=2, duration=0.3),
            "retr tls": _spec("retr", tls, users, tls=True, concurrency=2, duration=0.3),
            "biglist": _spec("biglist", plain, users[:1], duration=0.1),
            "deliver": _spec("deliver", ports["lmtp"], users, concurrency=2, duration=0.3),
            "idle": _spec("idle", plain, users, sessions=20),
        }
        for name, spec in runs.items():
            spec.start_at = time.time()
            result = await loadgen.run_spec(spec)
            assert result.errors == 0, f"{name}: {result.first_error}"
            assert result.ops > 0, name
        assert result.ops == 20  # every idle session answered NOOP after being held
    finally:
        for server in servers:
            await server.stop()


async def test_paced_logins_start_on_time_and_count_what_the_bound_refuses(tmp_path):
    """An open loop: rate x duration logins, each timed from when it was due."""
    servers, ports, users = await _server(tmp_path)
    try:
        spec = _spec("paced_login", ports["pop3"], users, concurrency=50, duration=0.5, rate=40)
        spec.start_at = time.time()
        result = await loadgen.run_spec(spec)
        assert (result.ops, result.errors) == (20, 0), result.first_error
        assert len(result.latencies) == 20
        assert all(0 < latency < 5 for latency in result.latencies)
        # No room for a second login in flight: every one due meanwhile is a failure.
        spec = _spec("paced_login", ports["pop3"], users, concurrency=1, duration=0.1, rate=1000)
        spec.start_at = time.time()
        result = await loadgen.run_spec(spec)
        assert result.ops + result.errors == 100
        assert result.errors > 0
        assert "in flight at the pace's bound" in result.first_error
    finally:
        for server in servers:
            await server.stop()


async def test_bench_client_processes_report_back(tmp_path):
    """The multi-process driver spawns clients, merges their results and leaves none."""
    servers, ports, users = await _server(tmp_path)
    try:
        spec = _spec("login", ports["pop3"], users, concurrency=2, duration=0.5)
        result = await asyncio.to_thread(clients.run_parallel, spec, 2, lead=0.5)
        assert result.errors == 0, result.first_error
        assert result.ops > 0
        assert len(result.latencies) == result.ops
        # A pace is the total over the processes: each starts its share.
        spec = _spec("paced_login", ports["pop3"], users, concurrency=50, duration=0.5, rate=40)
        result = await asyncio.to_thread(clients.run_parallel, spec, 2, lead=0.5)
        assert (result.ops, result.errors) == (20, 0), result.first_error
    finally:
        for server in servers:
            await server.stop()


@pytest.mark.parametrize("busy", [False, True])
def test_retr_scenario_opens_as_many_connections_as_it_reports(monkeypatch, busy):
    """The settings count connections per client process, the load generator a total:
    the RETR rows must be measured over the connections their labels and the report name,
    with a mailbox of its own for each."""
    seen: list[tuple[loadgen.Spec, int]] = []

    def run_parallel(spec: loadgen.Spec, processes: int) -> loadgen.Result:
        seen.append((spec, processes))
        result = loadgen.Result()
        result.ops = result.octets = 1
        return result

    monkeypatch.setattr(scenarios.clients, "run_parallel", run_parallel)
    settings, _ = run._settings(run._args(["--scenarios", "retr"]))
    server = types.SimpleNamespace(name="popbox", port=1, tls_port=2, cpu_seconds=lambda: 0.0)
    rate, _ = scenarios.retr(server, settings, "r4k", tls=False, busy=busy)
    [(spec, processes)] = seen
    per_process = settings.retr_busy_concurrency if busy else settings.retr_concurrency
    assert processes == settings.clients == 2
    assert spec.concurrency == per_process * processes  # 8, or 32 for the busy run
    assert [clients._split(spec.concurrency, processes, n) for n in range(processes)] == [
        per_process
    ] * processes
    assert len(set(spec.users)) >= spec.concurrency
    assert (f", {spec.concurrency} connections," in rate.name) is busy


def test_postgresql_table_sets_popbox_on_postgresql_against_dovecot_and_sqlite():
    """The PostgreSQL mode's table: each target row judged against both references."""
    medians = {
        "popbox-pg": {
            "login: logins/s": (900.0, "/s", "higher"),
            "retr 4k plain: MB/s": (40.0, "MB/s", "higher"),
            "biglist: login+STAT+LIST+UIDL": (0.5, "s", "lower"),
        },
        "dovecot": {
            "login: logins/s": (800.0, "/s", "higher"),
            "retr 4k plain: MB/s": (50.0, "MB/s", "higher"),
            "biglist: login+STAT+LIST+UIDL": (0.9, "s", "lower"),
        },
        "popbox": {
            "login: logins/s": (1200.0, "/s", "higher"),
            "retr 4k plain: MB/s": (55.0, "MB/s", "higher"),
            "biglist: login+STAT+LIST+UIDL": (0.2, "s", "lower"),
        },
    }
    lines = run._table(medians, list(medians["popbox-pg"]))
    # First popbox on SQLite against Dovecot, as without the PostgreSQL mode.
    assert lines[2].startswith("| login: logins/s | 1200 /s | 800 /s | 1.5 |")
    rows = lines[lines.index("PostgreSQL mode (`--store postgresql`):") + 4 :]
    login, retr, biglist = (row.split(" | ") for row in rows)
    # 900/800 >= 1.0 and 900/1200 = 0.75 >= 0.7
    assert login[3:6] == ["1.12", "1200 /s", "0.75"]
    assert login[-1] == "yes |"
    # 40/50 = 0.8 misses 1.0 against Dovecot although 40/55 >= 0.7 against SQLite.
    assert retr[-1] == "NO |"
    # 0.5 s against SQLite's 0.2 s is 2.5x, over the 2x bound.
    assert biglist[-2:] == ["<= 2.0 SQLite", "NO |"]
