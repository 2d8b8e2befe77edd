"""kill -9 torture: concurrent LMTP and POP3 against ``popbox serve`` with two workers,
random SIGKILLs of a worker and of everything, then a reconcile (issue 15).

DESIGN section 3: a delivery is durable before it is acknowledged, and UPDATE deletes
in one transaction (V0006) while a dropped connection deletes nothing (RFC 1939 s6).
So after any number of kills: nothing acknowledged is missing unless a QUIT removed
it, nothing is stored twice, and every reply (250, 4xx, QUIT's +OK/-ERR) was true
(``torture.Ledger.reconcile``).  A killed worker is restarted by the supervisor; after
the whole server is killed (its process group and the workers' own sessions) the test
starts it again on the same data.

``POPBOX_TORTURE_KILLS`` sets the number of kills (10 by default, bounded to about a
minute in CI); ``POPBOX_TORTURE_SEED`` replays a run (the seed is in the failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ops_helpers import Node, wait_gone
from popbox.store import open_store
from popbox_servers import USERS, ServeProcess, config_mapping, provision, toml_text
from torture import Ledger, Target, lmtp_sender, pop3_reader, token_of

if TYPE_CHECKING:
    from popbox_servers import TlsFiles

KILLS = int(os.environ.get("POPBOX_TORTURE_KILLS", "10"))
SEED = int(os.environ.get("POPBOX_TORTURE_SEED", str(random.SystemRandom().randrange(1 << 32))))
SENDERS = 2
READERS = 2


def start(tmp_path: Path, data_dir: Path, tls: TlsFiles, run: int) -> Node:
    mapping = config_mapping(
        data_dir,
        tls,
        {"login_type": "plaintext_login", "auth_failure_delay": 0.0},
        {"server": {"workers": 2, "json_logs": True}},
    )
    config = tmp_path / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(
        ["serve", "--config", str(config)],
        cwd=tmp_path,
        stderr_path=tmp_path / f"serve-{run}.err",
        own_group=True,
    )
    try:
        process.wait_for_listeners({"pop3", "lmtp"}, timeout=60)
    except BaseException:
        process.close()
        raise
    return Node(process, data_dir, config, mapping)


def kill_everything(node: Node) -> None:
    """SIGKILL the supervisor's process group and each worker's session at once."""
    workers = list(node.worker_pids().values())
    for group in [node.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    node.process.close()
    for pid in workers:
        wait_gone(pid)


def kill_a_worker(node: Node, rng: random.Random) -> None:
    """SIGKILL one serving worker, and wait until its successor serves.

    Killed before it is ready, a worker counts as one that cannot start, and the
    supervisor backs off from restarting it (node/supervisor.py): a schedule that killed
    fresh workers would test the back-off, not what a kill during service does.
    """
    pids = node.worker_pids()
    before = _count(node, "worker_ready")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pids[rng.choice(sorted(pids))], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _count(node, "worker_ready") == before:
        assert time.monotonic() < deadline, (
            f"no new worker was serving 30 s after a kill (the supervisor's threads wait in"
            f" {_waits(node.pid)}): {node.process.stderr()[-4000:]}"
        )
        time.sleep(0.05)


def _waits(pid: int) -> list[str]:
    """Where each thread of ``pid`` waits in the kernel, to tell a hang from a crash."""
    tasks = Path(f"/proc/{pid}/task")
    return [(task / "wchan").read_text() for task in tasks.iterdir()] if tasks.exists() else []


def _count(node: Node, event: str) -> int:
    return len([e for e in node.events() if e.get("event") == event])


def stored_tokens(data_dir: Path) -> list[int]:
    async def read() -> list[int]:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            tokens = []
            for user in USERS:
                for info in await store.snapshot(user):
                    wire = await store.fetch(user, info.uid)
                    assert wire is not None
                    tokens.append(token_of(wire))
            return tokens
        finally:
            await store.close()

    return asyncio.run(read())


def test_kill_9_loses_nothing_duplicates_nothing_and_every_reply_is_true(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a replayable test schedule, no secret
    data_dir = tmp_path / "data"
    provision(data_dir, USERS, {})
    runs = itertools.count()
    node = start(tmp_path, data_dir, tls_files, next(runs))
    target = Target(node.port("pop3"), node.port("lmtp"))
    ledger = Ledger()
    stop = threading.Event()
    tokens = itertools.count()  # shared by the senders: next() is atomic under the GIL
    clients = [
        threading.Thread(target=lmtp_sender, args=(target, ledger, tokens, stop))
        for _ in range(SENDERS)
    ] + [
        threading.Thread(target=pop3_reader, args=(target, ledger, SEED + n, stop))
        for n in range(READERS)
    ]
    for client in clients:
        client.start()
    kinds = []
    try:
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.2, 0.8))
            if kill % 3 == 2:  # every third: the whole server, then a restart
                kill_everything(node)
                node = start(tmp_path, data_dir, tls_files, next(runs))
                target.move(node.port("pop3"), node.port("lmtp"))
                kinds.append("all")
            else:
                kill_a_worker(node, rng)
                kinds.append("worker")
        time.sleep(0.5)  # the last restart serves too
    finally:
        stop.set()
        for client in clients:
            client.join(60)
        assert node.process.terminate() == 0, node.process.stderr()
        node.process.close()
    assert not [c for c in clients if c.is_alive()], "a client thread hung"

    problems = ledger.reconcile(stored_tokens(data_dir))
    summary = (
        f"seed {SEED}: {len(kinds)} kills ({kinds.count('all')} of everything),"
        f" {len(ledger.sent)} sent, {len(ledger.acked)} acknowledged,"
        f" {len(ledger.removed)} removed by QUIT, {ledger.retrieved} RETRs,"
        f" {ledger.sessions} POP3 sessions"
    )
    assert not problems, f"{summary}: {problems[:20]}"
    # A run that delivered or read nothing would prove nothing.
    assert len(ledger.acked) >= KILLS, summary
    assert ledger.removed, summary
    assert ledger.retrieved >= KILLS, summary
    print(summary)  # noqa: T201 - shown with -s, for runs by hand
