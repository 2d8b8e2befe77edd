"""A burst of connections is accepted in one go, and stopping never leaks one of them."""

from __future__ import annotations

import asyncio
import socket

from popbox.config import from_mapping
from popbox.node import app
from popbox.server.accept import Acceptor
from popbox.store import open_store


async def _server(tmp_path):
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "pop3": {"listen": ["127.0.0.1:0"], "tls_listen": [], "shutdown_grace": 0.2},
            "lmtp": {"listen": []},
        }
    )
    store = open_store("memory", data_dir=tmp_path, dsn="")
    await store.open()
    context = await app.build_context(config, store=store)
    servers, listening = await app.start_servers(context)
    return servers, next(port for kind, _, port in listening if kind == "pop3")


async def test_every_queued_connection_is_greeted(tmp_path):
    """RFC 1939 s4: every connection gets the greeting, however many arrive at once."""
    servers, port = await _server(tmp_path)
    try:
        pairs = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(100))
        )
        async with asyncio.timeout(10):
            greetings = await asyncio.gather(*(reader.readline() for reader, _ in pairs))
        assert all(line.startswith(b"+OK") for line in greetings)
        for _, writer in pairs:
            writer.close()
    finally:
        for server in servers:
            await server.stop()


async def test_connection_cancelled_before_it_ran_is_closed(tmp_path):
    """A connection accepted but not yet served when accepting stops is closed, not leaked."""
    config = from_mapping({"data_dir": str(tmp_path), "lmtp": {"listen": []}})
    store = open_store("memory", data_dir=tmp_path, dsn="")
    await store.open()
    context = await app.build_context(config, store=store)
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    acceptor = Acceptor(context, "pop3", listening, lambda _client: None)  # never reached
    ours, theirs = socket.socketpair()
    try:
        acceptor._start(asyncio.get_running_loop(), ours, ("127.0.0.1", 1))
        await acceptor.stop_accepting()  # cancels the task before its first step
        for _ in range(3):  # the task's cancelled step, then its done callbacks
            await asyncio.sleep(0)
        assert ours.fileno() == -1
    finally:
        theirs.close()
        ours.close()
