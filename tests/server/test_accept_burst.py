"""A burst of connections is accepted in one go."""

from __future__ import annotations

import asyncio

from popbox.config import from_mapping
from popbox.node import app
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
