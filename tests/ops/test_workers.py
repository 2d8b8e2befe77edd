"""Several worker processes behind one port, under a supervisor (``[server] workers``)."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import time

import pytest

from ops_helpers import TIMEOUT, http_get, login, read_line, sample, start_node, wait_gone

WORKERS = {"workers": 2, "metrics_listen": "127.0.0.1:0"}
ORPHAN_BOUND = 2.0  # seconds within which workers follow a killed supervisor
KINDS = frozenset({"pop3", "pop3s", "metrics"})


@pytest.fixture
def node(tmp_path, tls_files):
    started = start_node(
        tmp_path / "node",
        tls_files,
        sections={"server": WORKERS},
        pop3={"login_type": "plaintext_login", "shutdown_grace": 1.0},
        messages={"alice": [b"Subject: one\r\n\r\nbody\r\n"]},
        kinds=KINDS,
    )
    yield started
    started.process.close()


def served_by(node) -> set[int]:
    return {e["worker"] for e in node.events() if e.get("event") == "login"}


def test_every_worker_serves_the_one_port(node):
    """The supervisor binds once; both workers accept on the same socket."""
    assert len(node.process.addresses["pop3"]) == 1  # one listening line per socket
    clients = []
    deadline = time.monotonic() + 30
    while served_by(node) != {0, 1}:
        assert time.monotonic() < deadline, f"logins only in workers {served_by(node)}"
        # Sessions stay open, so a busy worker leaves the next accept to the other.
        clients.extend(login(node.port()) for _ in range(4))
        time.sleep(0.05)
    for client in clients:
        assert client.stat()[0] == 1
        client.quit()


def test_held_sessions_are_spread_evenly_over_the_workers(node):
    """One session after another, each kept open: the worker holding fewer takes the next
    (net/balance.py), so neither serves more than half plus one."""
    clients = [login(node.port()) for _ in range(8)]
    deadline = time.monotonic() + TIMEOUT
    while len(logins := [e["worker"] for e in node.events() if e.get("event") == "login"]) < 8:
        assert time.monotonic() < deadline, logins
        time.sleep(0.05)
    assert sorted(logins.count(worker) for worker in (0, 1)) in ([4, 4], [3, 5])
    for client in clients:
        client.quit()


def test_killed_worker_is_restarted_and_the_port_keeps_serving(node):
    before = node.worker_pids()
    assert sorted(before) == [0, 1]
    os.kill(before[0], signal.SIGKILL)
    [exited] = node.wait_for(lambda e: e.get("event") == "worker_exited")
    assert exited["worker"] == 0
    assert exited["status"] == -signal.SIGKILL
    for _ in range(20):  # served all along, by the survivor or the new worker
        client = login(node.port())
        assert client.stat()[0] == 1
        client.quit()
    node.wait_for(lambda e: e.get("event") == "worker_started" and e["pid"] != before[0])
    deadline = time.monotonic() + TIMEOUT
    while sample(node.metrics(), "popbox_workers") != 2:
        assert time.monotonic() < deadline, node.metrics()
        time.sleep(0.1)
    after = node.worker_pids()
    assert after[0] != before[0]
    assert after[1] == before[1]
    assert sample(node.metrics(), "popbox_worker_restarts_total") == 1


def test_a_worker_killed_while_serving_is_replaced_without_backing_off(node):
    """Back-off is for a worker that cannot start; one killed while serving (kill -9, the
    OOM killer) is replaced after the first delay however often it happens, or a node
    whose workers get killed now and then would serve with fewer and fewer of them."""
    for kill in range(1, 5):
        deadline = time.monotonic() + TIMEOUT
        while sample(node.metrics(), "popbox_workers") != 2:  # both ready again
            assert time.monotonic() < deadline, node.metrics()
            time.sleep(0.05)
        os.kill(node.worker_pids()[0], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while len(exits := [e for e in node.events() if e.get("event") == "worker_exited"]) < kill:
            assert time.monotonic() < deadline, node.process.stderr()
            time.sleep(0.05)
        assert [e["restart_in"] for e in exits] == [0.5] * kill


def test_metrics_add_up_across_workers(node):
    for _ in range(6):
        login(node.port()).quit()
    metrics = node.metrics()
    assert sample(metrics, "popbox_logins_total", mechanism="USER", result="success") == 6
    assert sample(metrics, "popbox_commands_total", verb="QUIT", result="ok") == 6
    assert sample(metrics, "popbox_connections_total", listener="pop3") == 6
    assert sample(metrics, "popbox_build_info", version=_version()) == 1
    status, body = http_get(node.port("metrics"), "/healthz")
    assert (status, body) == (200, "ok\n")


def test_limits_hold_for_the_node_not_per_worker(tmp_path, tls_files):
    node = start_node(
        tmp_path / "limited",
        tls_files,
        sections={"server": {**WORKERS, "max_connections_per_ip": 3}},
        kinds=KINDS,
    )
    try:
        held = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", node.port()), TIMEOUT)
            assert read_line(sock).startswith(b"+OK ")
            held.append(sock)
        with socket.create_connection(("127.0.0.1", node.port()), TIMEOUT) as fourth:
            assert read_line(fourth).startswith(b"-ERR [SYS/TEMP] too many connections from")
        for sock in held:
            sock.close()
    finally:
        node.process.close()


def test_sigterm_drains_every_worker_without_update(node):
    """SIGTERM: sessions get up to shutdown_grace, then -ERR and no UPDATE (RFC 1939 s6)."""
    client = login(node.port())
    client.dele(1)
    workers = node.worker_pids()
    node.signal(signal.SIGTERM)
    started = time.monotonic()
    line = client.file.readline()  # the session is ended by the server, not by us
    assert line.startswith(b"-ERR [SYS/TEMP] server shutting down")
    assert 0.8 < time.monotonic() - started < 8
    assert node.process.process.wait(TIMEOUT) == 0
    for pid in workers.values():
        wait_gone(pid)
    client.close()
    assert _count_messages(node) == 1  # the DELE was not applied


def test_sighup_reloads_every_worker(node):
    sessions = [login(node.port()) for _ in range(4)]
    node.rewrite_config(pop3={"banner": "reloaded banner"})
    node.signal(signal.SIGHUP)
    node.wait_for(lambda e: e.get("event") == "config_reloaded")
    deadline = time.monotonic() + TIMEOUT
    while True:  # each worker applies the reload when the supervisor's message arrives
        banners = set()
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", node.port()), TIMEOUT) as sock:
                banners.add(read_line(sock).rstrip())
        if banners == {b"+OK reloaded banner"}:
            break
        assert time.monotonic() < deadline, banners
        time.sleep(0.05)
    for session in sessions:  # not dropped by the reload
        assert session.noop().startswith(b"+OK")
        session.quit()


def test_workers_die_with_a_killed_supervisor_and_the_port_refuses_at_once(tmp_path, tls_files):
    """Issue 15 item 8: after SIGKILL of the supervisor its workers (in sessions of their
    own, so a signal to its process group misses them) went on accepting, and one with a
    session open lived on for the whole shutdown_grace.  The kernel now kills them with
    it (PR_SET_PDEATHSIG): the port refuses connections and no worker is left."""
    node = start_node(
        tmp_path / "orphans",
        tls_files,
        sections={"server": WORKERS},
        pop3={"login_type": "plaintext_login", "shutdown_grace": 30.0},
        kinds=KINDS,
    )
    try:
        workers = node.worker_pids()
        assert sorted(workers) == [0, 1]
        session = login(node.port())  # a session in progress keeps a draining worker alive
        node.signal(signal.SIGKILL)  # the workers are in sessions of their own: only it dies
        killed = time.monotonic()
        while _accepts(node.port()):
            assert time.monotonic() - killed < ORPHAN_BOUND, "the port still accepts"
            time.sleep(0.02)
        for pid in workers.values():
            wait_gone(pid, timeout=ORPHAN_BOUND)
        session.sock.settimeout(TIMEOUT)
        with contextlib.suppress(ConnectionResetError):
            assert session.sock.recv(1) == b""  # its worker is gone: the session with it
        session.close()
    finally:
        node.process.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), TIMEOUT):
            return True
    except ConnectionRefusedError:
        return False


def _version() -> str:
    from popbox import __version__  # noqa: PLC0415

    return __version__


def _count_messages(node) -> int:
    import asyncio  # noqa: PLC0415

    from popbox.store import open_store  # noqa: PLC0415

    async def count() -> int:
        store = open_store("sqlite", data_dir=node.data_dir, dsn="")
        await store.open()
        try:
            return len(await store.snapshot("alice"))
        finally:
            await store.close()

    return asyncio.run(count())


def test_lmtp_listeners_are_shared_by_the_workers_too(tmp_path, tls_files):
    """LMTP (RFC 2033) TCP and unix listeners are bound once and served by every worker."""
    path = tmp_path / "lmtp.sock"
    node = start_node(
        tmp_path / "lmtp",
        tls_files,
        sections={"server": WORKERS, "lmtp": {"listen": ["127.0.0.1:0", f"unix:{path}"]}},
        pop3={"login_type": "plaintext_login"},
        kinds=KINDS | {"lmtp"},
    )
    try:
        assert f"listening lmtp unix:{path}" in node.process.output
        port = node.port("lmtp")
        for n, host in enumerate(["127.0.0.1"] * 3 + [str(path)] * 3):
            with smtplib.LMTP(host, port if host[0] != "/" else 0, timeout=TIMEOUT) as lmtp:
                text = b"Subject: hi %d\r\n\r\nx\r\n" % n  # six messages, not one retried
                refused = lmtp.sendmail("carol@example.org", ["alice"], text)
                assert refused == {}
        client = login(node.port())
        assert client.stat()[0] == 6
        client.quit()
        node.signal(signal.SIGTERM)
        assert node.process.process.wait(TIMEOUT) == 0
        assert not path.exists()  # the supervisor removes the socket it created
    finally:
        node.process.close()


def test_delivery_results_are_counted(tmp_path, tls_files):
    node = start_node(
        tmp_path / "count",
        tls_files,
        sections={"server": WORKERS, "lmtp": {"listen": ["127.0.0.1:0"]}},
        kinds=KINDS | {"lmtp"},
    )
    try:
        for recipient in ("alice", "alice", "nobody"):
            with (
                smtplib.LMTP("127.0.0.1", node.port("lmtp"), timeout=TIMEOUT) as lmtp,
                contextlib.suppress(smtplib.SMTPRecipientsRefused),
            ):
                lmtp.sendmail("carol@example.org", [recipient], b"Subject: x\r\n\r\ny\r\n")
        metrics = node.metrics()
        assert sample(metrics, "popbox_deliveries_total", result="delivered") == 2
        assert sample(metrics, "popbox_deliveries_total", result="unknown_user") == 1
    finally:
        node.process.close()
