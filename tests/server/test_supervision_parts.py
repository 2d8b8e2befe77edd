"""The pieces the supervisor is built from: the control channel, the reload merge, and
what it says when a worker cannot start."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest

from popbox.config import from_mapping
from popbox.node.control import Channel, decode_config, encode_config
from popbox.node.supervisor import Supervisor, WorkerStartError
from popbox.observability.log import make_logger
from popbox.server.lifecycle import merge_reload


async def pair(handler_a, handler_b) -> tuple[Channel, Channel]:
    left, right = socket.socketpair()
    return await Channel.open(left, handler_a), await Channel.open(right, handler_b)


async def test_requests_go_both_ways_and_get_their_own_answer():
    async def double(message):
        await asyncio.sleep(0.01 if message["n"] % 2 else 0)  # answers come out of order
        return {"n": message["n"] * 2}

    async def hello(message):
        return {"hi": message["op"]}

    a, b = await pair(hello, double)
    try:
        answers = await asyncio.gather(*(a.request("double", n=n) for n in range(10)))
        assert [reply["n"] for reply in answers] == [n * 2 for n in range(10)]
        assert (await b.request("ping"))["hi"] == "ping"
    finally:
        await a.close()
        await b.close()


async def test_notifications_get_no_answer():
    seen = asyncio.Queue()

    async def record(message):
        await seen.put(message)

    a, b = await pair(record, record)
    try:
        a.notify("release", ip="192.0.2.1")
        assert await asyncio.wait_for(seen.get(), 5) == {"op": "release", "ip": "192.0.2.1"}
    finally:
        await a.close()
        await b.close()


async def test_a_handler_error_is_answered_not_left_hanging():
    async def broken(message):
        raise KeyError(message["missing"])

    async def unused(message):
        return None

    a, b = await pair(unused, broken)
    try:
        reply = await asyncio.wait_for(a.request("boom"), 5)
        assert reply["error"].startswith("KeyError")
    finally:
        await a.close()
        await b.close()


async def test_a_vanished_peer_fails_pending_and_later_requests():
    never = asyncio.Event()

    async def hang(message):
        await never.wait()

    async def unused(message):
        return None

    a, b = await pair(unused, hang)
    pending = asyncio.ensure_future(a.request("slow"))
    await asyncio.sleep(0.05)
    await b.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pending, 5)
    await asyncio.wait_for(a.closed.wait(), 5)
    with pytest.raises(ConnectionError):
        await a.request("again")
    a.notify("dropped")  # silently
    await a.close()


def test_config_survives_the_channel():
    config = from_mapping({"server": {"workers": 3, "trusted_proxies": ["10.0.0.0/8"]}})
    assert decode_config(encode_config(config)) == config


def test_reload_applies_live_settings_and_keeps_the_rest():
    running = from_mapping({"pop3": {"listen": ["127.0.0.1:110"]}, "server": {"workers": 2}})
    loaded = from_mapping(
        {
            "pop3": {
                "listen": ["127.0.0.1:1110"],
                "banner": "new",
                "login_type": "plaintext_login",
            },
            "server": {"workers": 4, "max_connections": 10, "trusted_proxies": ["10.0.0.1"]},
            "storage": {"backend": "postgresql", "dsn": "postgresql://db/popbox"},
        }
    )
    merged, ignored = merge_reload(running, loaded)
    assert sorted(ignored) == ["pop3.listen", "server.workers", "storage"]
    assert merged.pop3.banner == "new"
    assert merged.pop3.login_type == "plaintext_login"
    assert merged.pop3.listen == ("127.0.0.1:110",)
    assert merged.server.workers == 2
    assert merged.server.max_connections == 10
    assert merged.server.trusted_proxies == ("10.0.0.1",)
    assert merged.storage == running.storage


def test_reload_of_the_same_file_changes_nothing():
    config = from_mapping({"pop3": {"banner": "same"}})
    assert merge_reload(config, config) == (config, [])


def test_reload_keeps_quota_and_retention_which_are_read_at_start():
    """[quota] and [retention] feed the delivery agent and the sweeper built at start: a
    reload keeps them (so CAPA's EXPIRE matches what the sweeper removes) and names them."""
    running = from_mapping({"retention": {"retrieved_days": 7}})
    loaded = from_mapping({"retention": {"retrieved_days": 1}, "quota": {"warning_percent": 50}})
    merged, ignored = merge_reload(running, loaded)
    assert sorted(ignored) == ["quota", "retention"]
    assert merged.retention == running.retention
    assert merged.quota == running.quota


async def test_a_worker_that_cannot_start_is_reported_once_by_its_own_line():
    """STYLE section 5: a process that cannot start prints exactly one line; with two
    workers failing alike, the supervisor's error is the first one's report, verbatim."""
    supervisor = Supervisor(
        from_mapping({"server": {"workers": 2}}),
        config_path=None,
        announce=lambda _line: None,
        log=make_logger(json=True, stream=io.StringIO()),
    )
    report = "tls.cert_file: /etc/popbox/cert.pem does not exist or is not a file"
    for slot in supervisor._slots:
        assert await supervisor._on_message(slot, {"op": "failed", "error": report}) == {}
        slot.exit_status = 1

    with pytest.raises(WorkerStartError) as raised:
        await supervisor._all_ready()

    assert str(raised.value) == report
