"""A TCP relay on a loopback port that stands for a directory server gone wrong.

``Relay(target)`` forwards to slapd and counts connections (``accepted``, the most open
at once in ``max_open``); ``delay`` holds every reply chunk that long, like a domain
controller across a WAN link.  Without a target it is a server that misbehaves:
``mode="hang"`` accepts and never answers, ``mode="garbage"`` answers every request
with bytes that are not LDAP.  It runs on the test's event loop, as does the directory
under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Relay"]

Mode = Literal["forward", "hang", "garbage"]
GARBAGE = b"HTTP/1.1 400 Bad Request\r\n\r\n\x30\x84\xff\xff\xff\xff not ldap"
CHUNK = 65536


@dataclass
class Relay:
    target: tuple[str, int] | None = None
    mode: Mode = "forward"
    delay: float = 0.0
    accepted: int = 0
    open: int = 0
    max_open: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.port}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and wait for the handlers to see it (cancelling them
        instead makes asyncio's stream callback log the cancellation as an error)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "hang":
                await reader.read()  # until the client gives up and closes
            elif self.mode == "garbage":
                while await reader.read(CHUNK):
                    writer.write(GARBAGE)
                    await writer.drain()
            else:
                await self._forward(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.target is not None
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.add(up_writer)

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float
        ) -> None:
            # Each chunk leaves ``delay`` after it arrived, as on a link with that
            # latency: a reply in two segments is not delayed twice.
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def send() -> None:
                while True:
                    due, data = await queue.get()
                    if not data:
                        sink.close()
                        return
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    sink.write(data)
                    await sink.drain()

            sender = asyncio.create_task(send())
            try:
                while data := await source.read(CHUNK):
                    queue.put_nowait((loop.time() + delay, data))
                queue.put_nowait((0.0, b""))
                await sender
            finally:
                sender.cancel()

        try:
            await asyncio.gather(pump(reader, up_writer, 0.0), pump(up_reader, writer, self.delay))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()
