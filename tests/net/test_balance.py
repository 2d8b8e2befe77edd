"""Workers sharing listening sockets spread the connections evenly (net/balance.py).

Two POP3 servers on one listening socket in one event loop stand for two workers of a
node: each has its own view of the same shared counters.  A worker holding more
connections than another leaves a new one to it; if nobody else takes it within
``DEFER`` it takes it itself, so a connection never waits for a worker that is not there.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

from popbox.config import from_mapping
from popbox.net.balance import DEFER, MARGIN, AcceptBalance, create_counters
from popbox.node import app
from popbox.store import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.server.context import ServerContext


def test_counters_are_shared_and_compared_with_every_other_worker() -> None:
    assert MARGIN == 2
    fd = create_counters(3)
    try:
        first, second, third = (AcceptBalance(fd, n, 3) for n in range(3))
        assert not first.busier_than_another()  # all at 0
        first.opened()
        assert not first.busier_than_another()  # one more is ordinary churn
        first.opened()
        assert first.busier_than_another()  # 2, 0, 0
        assert not second.busier_than_another()
        second.opened()
        assert first.busier_than_another()  # third still holds none
        third.opened()
        assert not first.busier_than_another()  # 2, 1, 1
        third.opened()
        third.opened()
        assert third.busier_than_another()  # 2, 1, 3
        third.closed()
        assert not third.busier_than_another()
        again = AcceptBalance(fd, 0, 3)  # worker 0 restarted: its old count is gone
        assert not again.busier_than_another()
        assert third.busier_than_another()  # 0, 1, 2
    finally:
        os.close(fd)


async def _worker(tmp_path: Path, listening: socket.socket, balance: AcceptBalance | None):
    # A descriptor of its own on the shared socket, as an inherited one is in a worker.
    sock = socket.socket(fileno=os.dup(listening.fileno()))
    sock.setblocking(False)
    config = from_mapping(
        {"data_dir": str(tmp_path), "pop3": {"tls_listen": []}, "lmtp": {"listen": []}}
    )
    store = open_store("memory", data_dir=tmp_path, dsn="")
    await store.open()
    context = await app.build_context(config, store=store)
    context.balance = balance
    servers, _ = await app.start_servers(context, [("pop3", sock)])
    return context, servers


async def _greeted(port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"+OK")
    return writer


def _held(context: ServerContext) -> int:
    return len(context.sessions)


def busy_balance_held(context: ServerContext) -> int:
    return _held(context) + 3  # worker 0's three connections held elsewhere


async def test_the_less_loaded_worker_takes_the_connection(tmp_path: Path) -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    port = listening.getsockname()[1]
    fd = create_counters(2)
    # A busier worker leaves each connection to the other for a whole second rather than
    # the 2 ms a node uses: both run on this one loop, which a slow or loaded run
    # (coverage, a busy machine) may keep from the other's accept for longer than 2 ms.
    busy_balance = AcceptBalance(fd, 0, 2, defer=1.0)
    idle_balance = AcceptBalance(fd, 1, 2, defer=1.0)
    busy, busy_servers = await _worker(tmp_path / "0", listening, busy_balance)
    idle, idle_servers = await _worker(tmp_path / "1", listening, idle_balance)
    writers = []
    try:
        for _ in range(3):  # worker 0 already holds three connections elsewhere
            busy_balance.opened()
        for expected in (1, 2):
            writers.append(await _greeted(port))
            assert (_held(busy), _held(idle)) == (0, expected)
        # Now 3 and 2, closer than MARGIN: either may take the next ones, but neither
        # gets MARGIN ahead of the other.
        for _ in range(4):
            writers.append(await _greeted(port))
            assert abs(busy_balance_held(busy) - _held(idle)) < MARGIN + 1
    finally:
        for writer in writers:
            writer.close()
        for server in (*busy_servers, *idle_servers):
            await server.stop()
        listening.close()
        os.close(fd)


async def test_a_busier_worker_still_takes_what_nobody_else_does(tmp_path: Path) -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    port = listening.getsockname()[1]
    fd = create_counters(2)
    busy_balance = AcceptBalance(fd, 0, 2)
    AcceptBalance(fd, 1, 2)  # worker 1 exists, holds nothing, and does not accept (stuck)
    busy, servers = await _worker(tmp_path, listening, busy_balance)
    try:
        for _ in range(MARGIN):
            busy_balance.opened()
        loop = asyncio.get_running_loop()
        began = loop.time()
        writer = await _greeted(port)
        assert loop.time() - began >= DEFER
        assert _held(busy) == 1
        writer.close()
    finally:
        for server in servers:
            await server.stop()
        listening.close()
        os.close(fd)
