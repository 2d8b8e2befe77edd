"""Metrics, /healthz, the timed store and the per-user protocol log."""

from __future__ import annotations

import asyncio
import poplib
import urllib.error
import urllib.request

import pytest

from popbox.observability.metrics import (
    Metrics,
    MetricsHttpServer,
    check_store,
    render_merged,
    start_metrics,
)
from popbox.observability.store_timing import timed_store
from popbox.store.base import StoreTemporaryError, UnknownUser
from popbox.store.memory import MemoryStore
from popbox_servers import USERS

TIMEOUT = 10.0
BODY_LINE = b"+OK this body line must never reach the protocol log"


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def login(server, user: str = "alice") -> poplib.POP3:
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    client.user(user)
    client.pass_(USERS[user])
    return client


@pytest.fixture
def server(start_pop3_server):
    return start_pop3_server(
        {"login_type": "plaintext_login"},
        sections={"server": {"protocol_log_users": ["alice"]}},
    )


def test_sessions_count_into_the_metrics(server):
    server.deliver("alice", b"Subject: x\r\n\r\n" + BODY_LINE + b"\r\n")
    client = login(server)
    client.retr(1)
    with pytest.raises(poplib.error_proto):
        client._shortcmd("FROB")
    client.quit()
    failed = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    failed.user("alice")
    with pytest.raises(poplib.error_proto):
        failed.pass_("wrong")
    failed.quit()
    text = server._context.metrics.render().decode()
    assert sample(text, 'popbox_logins_total{mechanism="USER",result="success"}') == 1
    assert sample(text, 'popbox_logins_total{mechanism="USER",result="failure"}') == 1
    assert sample(text, 'popbox_commands_total{result="ok",verb="RETR"}') == 1
    assert sample(text, 'popbox_commands_total{result="err",verb="OTHER"}') == 1
    assert 'verb="FROB"' not in text  # a client cannot invent label values
    assert sample(text, "popbox_sent_bytes_total") > len(BODY_LINE)
    assert sample(text, 'popbox_connections_total{listener="pop3"}') == 2
    # The login's read and UPDATE's commit; a small RETR answered at once is not timed
    # (the RETR hot path, store_timing.TimedMaildrop).
    assert sample(text, 'popbox_store_operation_seconds_count{operation="open_maildrop"}') == 1
    assert sample(text, 'popbox_store_operation_seconds_count{operation="commit"}') == 1


def test_protocol_log_shows_a_listed_user_s_lines_but_no_password_or_body(server):
    [delivered] = server.deliver("alice", b"Subject: x\r\n\r\n" + BODY_LINE + b"\r\n")
    server.deliver("bob", b"Subject: y\r\n\r\nbody\r\n")
    alice = login(server, "alice")
    alice.stat()
    alice.retr(1)
    alice.quit()
    bob = login(server, "bob")
    bob.stat()
    bob.quit()
    lines = [
        (e["direction"], e["line"], e.get("user"))
        for e in server.log.events()
        if e.get("event") == "protocol"
    ]
    stat = lines.index(("in", "STAT", "alice"))
    assert lines[stat + 1][:2] == ("out", f"+OK 1 {delivered.info.size}")
    assert ("in", "RETR 1", "alice") in lines
    assert any(d == "out" and line.endswith("octets") for d, line, _ in lines)
    assert ("in", "QUIT", "alice") in lines
    assert {user for _, _, user in lines} == {"alice"}  # bob is not listed
    text = server.log.text()
    assert USERS["alice"] not in text
    assert BODY_LINE.decode() not in text
    peers = {e["peer"] for e in server.log.events() if e.get("event") == "protocol"}
    assert all(peer.startswith("127.0.0.1:") for peer in peers)


async def test_timed_store_counts_failures_but_not_answers():
    metrics = Metrics()

    class Flaky(MemoryStore):
        async def usage(self, _name: str) -> int:
            raise StoreTemporaryError("database went away")

    store = timed_store(Flaky(), metrics)
    await store.open()
    with pytest.raises(UnknownUser):
        await store.delete_user("nobody")
    with pytest.raises(StoreTemporaryError):
        await store.usage("alice")
    text = metrics.render().decode()
    assert sample(text, 'popbox_store_errors_total{operation="usage"}') == 1
    assert sample(text, 'popbox_store_errors_total{operation="delete_user"}') == 0
    assert sample(text, 'popbox_store_operation_seconds_count{operation="delete_user"}') == 1


async def test_healthz_says_503_when_the_store_does_not_answer():
    class Down(MemoryStore):
        async def get_user(self, _name: str):
            raise StoreTemporaryError("connection refused")

    healthy, down = MemoryStore(), Down()
    assert await check_store(healthy) == (True, "ok")
    assert await check_store(down) == (False, "store unavailable: StoreTemporaryError")

    async def render() -> bytes:
        return b"x 1\n"

    server = MetricsHttpServer(render, lambda: check_store(down))
    _, port = await server.start("127.0.0.1", 0)
    try:
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert (status, body) == (503, "store unavailable: StoreTemporaryError\n")
        assert await asyncio.to_thread(get, port, "/metrics") == (200, "x 1\n")
        assert (await asyncio.to_thread(get, port, "/nothing-here"))[0] == 404
    finally:
        await server.stop()


def test_metrics_listener_of_a_running_server(server):
    lines: list[str] = []
    context = server._context
    http = server.call(start_metrics("127.0.0.1:0", context.metrics, context.store, lines.append))
    try:
        port = int(lines[0].rsplit(":", 1)[1])
        assert lines[0].startswith("listening metrics 127.0.0.1:")
        login(server).quit()
        status, text = get(port, "/metrics")
        assert status == 200
        assert sample(text, 'popbox_logins_total{mechanism="USER",result="success"}') == 1
        assert get(port, "/healthz") == (200, "ok\n")
    finally:
        server.call(http.stop())


def test_render_merged_adds_up_processes():
    one, two = Metrics(), Metrics()
    one.login("USER", "success")
    two.login("USER", "success")
    two.login("PLAIN", "failure")
    two.connections_open.labels("pop3").inc(3)
    two.store_seconds.labels("fetch").observe(0.002)
    text = render_merged([one.export(), two.export()]).decode()
    assert sample(text, 'popbox_logins_total{mechanism="USER",result="success"}') == 2
    assert sample(text, 'popbox_logins_total{mechanism="PLAIN",result="failure"}') == 1
    assert sample(text, 'popbox_connections_open{listener="pop3"}') == 3
    assert sample(text, 'popbox_store_operation_seconds_count{operation="fetch"}') == 1
    assert "_created" not in text
    assert text.count("popbox_build_info{") == 1
    assert sample(text, 'popbox_build_info{version="' + _version() + '"}') == 1


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _version() -> str:
    from popbox import __version__  # noqa: PLC0415

    return __version__
