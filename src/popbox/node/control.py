"""The control channel between the supervisor and one worker process.

Theory of operation: one UNIX socketpair per worker carries newline-delimited JSON
objects both ways.  A request has an ``id`` and an ``op``; its answer carries ``re``
(the request's id).  A message without ``id`` is a notification and gets no answer.
Either side may send requests at any time: the worker asks the supervisor to admit a
connection or a login against the node's limits, the supervisor asks the worker for its
metrics or its store's health, and tells it to reload or to stop.

The channel is private to the two processes (a socketpair inherited by exactly one
child), so its payloads are trusted; the configuration travels as a pickled ``Config``.
When the other side goes away, pending requests fail with ``ConnectionError`` and
``closed`` is set: a worker whose supervisor died drains and exits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    from popbox.config import Config

__all__ = ["Channel", "Message", "decode_config", "encode_config"]

Message = dict[str, Any]
_LINE_LIMIT = 16 * 1024 * 1024  # a metrics export of a busy worker stays far below this


def encode_config(config: Config) -> str:
    return base64.b64encode(pickle.dumps(config)).decode("ascii")


def decode_config(text: str) -> Config:
    # Only the supervisor, our own parent process, writes to this channel.
    config: Config = pickle.loads(base64.b64decode(text))  # noqa: S301
    return config


class Channel:
    """Requests and notifications over one stream, in both directions."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Callable[[Message], Awaitable[Message | None]],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls, sock: socket.socket, handler: Callable[[Message], Awaitable[Message | None]]
    ) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_LINE_LIMIT)
        return cls(reader, writer, handler)

    async def request(self, op: str, **fields: Any) -> Message:
        """Send a request and wait for its answer; ``ConnectionError`` if the peer is gone.

        The caller bounds the wait (``asyncio.timeout``); a late answer is dropped.
        """
        if self.closed.is_set():
            raise ConnectionError("control channel closed")
        request_id = next(self._ids)
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            self._send({"id": request_id, "op": op, **fields})
            return await answer
        finally:
            self._waiting.pop(request_id, None)

    def notify(self, op: str, **fields: Any) -> None:
        """Send a message that gets no answer; dropped silently if the peer is gone."""
        if not self.closed.is_set():
            self._send({"op": op, **fields})

    async def close(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def _send(self, message: Message) -> None:
        try:
            self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except (OSError, RuntimeError) as exc:
            self._lost()
            raise ConnectionError("control channel closed") from exc

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if "re" in message:
                    waiter = self._waiting.get(message["re"])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(message)
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (OSError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            pass
        finally:
            self._lost()

    async def _answer(self, message: Message) -> None:
        try:
            reply = await self._handler(message)
        except Exception as exc:  # noqa: BLE001 - the requester gets the error, not a hang
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if "id" in message and not self.closed.is_set():
            with contextlib.suppress(ConnectionError):
                self._send({"re": message["id"], **(reply or {})})

    def _lost(self) -> None:
        self.closed.set()
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("control channel closed"))
