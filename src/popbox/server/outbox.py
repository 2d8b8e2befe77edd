"""What one session has to send, handed to its transport no faster than the client takes it.

Theory of operation: replies and small bodies go to the transport as they come (one
write per flush; several small chunks joined so that TLS makes one record of them).  A
chunk larger than ``STREAM_SLICE`` (a large message body, in the wire form the store
returned) is not handed over whole: it is written in memoryview slices of the stored
bytes, no copies, one after another while the transport is below its high-water mark, and
the rest waits here until ``resume`` (the transport's ``resume_writing``).  So a client
that stops reading leaves at most the transport's buffer plus one slice in flight, and
the body itself, once; and the session reads no further command while anything waits
here (``busy``), which is the back-pressure of DESIGN.md section 3.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["JOIN_LIMIT", "STREAM_SLICE", "Outbox"]

JOIN_LIMIT = 64 * 1024  # replies up to this size go out as one buffer
STREAM_SLICE = 256 * 1024  # larger chunks are handed over in slices of this size


class Outbox:
    """The session's output between the sans-IO connection and the transport."""

    __slots__ = ("_emptied", "_rest", "_transport", "blocked")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._rest: collections.deque[memoryview | bytes] = collections.deque()
        self.blocked = False  # the transport is above its high-water mark
        self._emptied: asyncio.Future[None] | None = None  # handed_over() waits on it

    def attach(self, transport: asyncio.Transport) -> None:
        """Write to ``transport`` from now on (the TLS one after STLS)."""
        self._transport = transport

    @property
    def busy(self) -> bool:
        """Output waits: either here or in a transport above its high-water mark."""
        return self.blocked or bool(self._rest)

    @property
    def waiting(self) -> int:
        """Octets not yet handed to the transport."""
        return sum(map(len, self._rest))

    def settled(self) -> bool:
        """Everything has left the process: nothing here, nothing in the transport."""
        transport = self._transport
        return not self._rest and (transport is None or transport.get_write_buffer_size() == 0)

    def send(self, chunks: Sequence[bytes], size: int) -> None:
        """Hand ``chunks`` (``size`` octets in all) over, or keep them until ``resume``."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._rest or (size > STREAM_SLICE and max(map(len, chunks)) > STREAM_SLICE):
            self._rest.extend(chunks)
            self._write_slices(transport)
        elif len(chunks) == 1:
            transport.write(chunks[0])
        elif size <= JOIN_LIMIT:
            # One buffer, one write(): over TLS, one record instead of one per chunk.
            transport.write(b"".join(chunks))
        else:
            transport.writelines(chunks)

    async def handed_over(self) -> None:
        """Wait until nothing waits here: all handed to the transport, or dropped."""
        if self._rest:
            self._emptied = asyncio.get_running_loop().create_future()
            await self._emptied

    def pause(self) -> None:
        self.blocked = True

    def resume(self) -> None:
        """The transport drained below its low-water mark: hand over what waits."""
        self.blocked = False
        transport = self._transport
        if self._rest and transport is not None and not transport.is_closing():
            self._write_slices(transport)

    def drop(self) -> int:
        """Forget what waits (the connection is gone); returns how many octets that was."""
        octets = self.waiting
        self._rest.clear()
        self.blocked = False
        self._wake()
        return octets

    def _wake(self) -> None:
        if self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)

    def _write_slices(self, transport: asyncio.Transport) -> None:
        # write() calls pause_writing() itself when it crosses the high-water mark.
        rest = self._rest
        while rest and not self.blocked and not transport.is_closing():
            head = rest[0]
            if len(head) <= STREAM_SLICE:
                rest.popleft()
                transport.write(head)
                continue
            view = head if isinstance(head, memoryview) else memoryview(head)
            rest[0] = view[STREAM_SLICE:]
            transport.write(view[:STREAM_SLICE])
        if not rest:
            self._wake()
