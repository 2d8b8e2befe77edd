"""A TCP proxy in front of PostgreSQL that can lose a COMMIT, or its reply, on purpose.

What a dying connection looks like to popbox, reproduced exactly: the proxy reads the
frontend protocol (a startup packet, then a type octet and a length per message) and,
once armed, acts on the next simple-query ``COMMIT`` (which is how asyncpg ends a
transaction block):

- ``"reply"``: the COMMIT goes to the server, which commits; its reply is dropped and
  both connections are closed: the client cannot know that it committed;
- ``"commit"``: the COMMIT is dropped and both connections are closed: the server rolls
  the transaction back when it sees its client gone.

With ``refuse`` set, new connections are closed at once (the database is unreachable
while popbox tries to learn the outcome).  The proxy runs on its own thread and event
loop, so tests on any loop (the in-process server's, pytest-asyncio's) can use it.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

__all__ = ["CommitCutter"]

TIMEOUT = 10.0
SSL_REQUEST = 80877103
GSS_REQUEST = 80877104


class CommitCutter:
    """A proxy to the server of ``dsn``; ``dsn_through`` is the same database through it."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._dsn = parts
        self.armed: str | None = None  # "reply" or "commit": what the next COMMIT loses
        self.cuts = 0  # how many COMMITs were cut so far
        self.refuse = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-cutter")
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = self._call(self._listen())

    def dsn_through(self) -> str:
        """The DSN of the same database via the proxy (no TLS: the proxy reads the bytes)."""
        netloc = self._dsn.netloc.rsplit("@", 1)
        user = netloc[0] + "@" if len(netloc) == 2 else ""
        query = "sslmode=disable"
        return urlunsplit(self._dsn._replace(netloc=f"{user}127.0.0.1:{self.port}", query=query))

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        if self.refuse:
            client_w.transport.abort()
            return
        server_r, server_w = await asyncio.wait_for(
            asyncio.open_connection(*self._upstream), TIMEOUT
        )
        self._writers.add(server_w)
        cut = asyncio.Event()
        replies = asyncio.create_task(self._replies(server_r, client_w, cut))
        try:
            await self._requests(client_r, server_w, client_w, cut)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            await asyncio.wait_for(replies, TIMEOUT)
            for writer in (client_w, server_w):
                writer.transport.abort()
                self._writers.discard(writer)

    async def _requests(
        self,
        client_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
        cut: asyncio.Event,
    ) -> None:
        while True:  # startup packets: untyped, length first
            header = await client_r.readexactly(8)
            length, code = struct.unpack("!II", header)
            server_w.write(header + await client_r.readexactly(length - 8))
            if code not in {SSL_REQUEST, GSS_REQUEST}:
                break
        while not cut.is_set():
            kind = await client_r.readexactly(1)
            length_bytes = await client_r.readexactly(4)
            (length,) = struct.unpack("!I", length_bytes)
            body = await client_r.readexactly(length - 4)
            commit = kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT")
            if commit and self.armed is not None:
                mode, self.armed = self.armed, None
                self.cuts += 1
                cut.set()
                if mode == "reply":
                    # The reply, when it comes, is dropped, and only then are both
                    # connections closed: the server has surely read the COMMIT.
                    server_w.write(kind + length_bytes + body)
                    await server_w.drain()
                    return
                client_w.transport.abort()
                server_w.transport.abort()
                return
            server_w.write(kind + length_bytes + body)
            await server_w.drain()

    async def _replies(
        self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        try:
            while True:
                data = await server_r.read(65536)
                if not data or cut.is_set():
                    break
                client_w.write(data)
                await client_w.drain()
        except OSError:
            pass
        client_w.transport.abort()
