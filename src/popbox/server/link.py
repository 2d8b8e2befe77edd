"""The transport under one POP3 session: writing, reading back-pressure, closing, cutting off.

Theory of operation: ``Pop3Protocol`` (``server/session.py``) decides what to answer and
when; a ``ClientLink`` owns the asyncio transport that carries it (the plain one, then
the TLS one after STLS).  Output goes through the session's ``Outbox``; reading pauses
once ``READ_PAUSE_THRESHOLD`` octets wait unanswered and resumes when they are answered;
closing waits for the last replies to leave the process, at most a linger time, and
cutting off drops the connection at once and corrects the session's count of octets
sent by what never left.  The link learns that the connection is gone from
``connection_lost`` (``lost``) and never writes after it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from popbox.server.outbox import Outbox
from popbox.server.progress import Output, OutputWatch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.clock import Clock
    from popbox.server.observe import SessionObserver

__all__ = ["READ_PAUSE_THRESHOLD", "ClientLink", "endpoint"]

READ_PAUSE_THRESHOLD = 64 * 1024  # stop reading while this much waits unanswered


def endpoint(address: object) -> str:
    """``ip:port`` of a socket address, the text of another (a Unix socket's), or "-"."""
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address or "-")


class ClientLink:
    """One session's transport and the output on its way to it."""

    def __init__(self, observe: SessionObserver) -> None:
        self._observe = observe
        self.transport: asyncio.Transport | None = None
        self.outbox = Outbox()
        self._reading_paused = False
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._output = OutputWatch()  # whether a silent client still reads what it is owed

    def attach(self, transport: asyncio.Transport) -> None:
        """Carry the session over ``transport`` from now on (the TLS one after STLS)."""
        self.transport = transport
        self.outbox.attach(transport)

    @property
    def busy(self) -> bool:
        """Output waits for the client to take it."""
        return self.outbox.busy

    @property
    def gone(self) -> bool:
        """``connection_lost`` has come: the socket is closed."""
        return self._gone.done()

    def lost(self) -> None:
        """The connection is gone: nothing will drain now, do not wait for it."""
        if not self._gone.done():
            self._gone.set_result(None)
        self.outbox.drop()

    def send(self, chunks: Sequence[bytes], size: int) -> None:
        self.outbox.send(chunks, size)

    def read_less(self, buffered: int) -> None:
        """Stop reading while ``buffered`` octets wait unanswered above the threshold."""
        transport = self.transport
        if buffered > READ_PAUSE_THRESHOLD and not self._reading_paused and transport:
            transport.pause_reading()
            self._reading_paused = True

    def read_more(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def output_state(self) -> Output:
        """Whether the client is taking what it is owed (for the inactivity timer)."""
        transport = self.transport
        if transport is None:
            return Output.IDLE
        handed_over = self._observe.sent - self.outbox.waiting
        return self._output.look(transport, handed_over)

    async def close(self, clock: Clock, linger: float) -> None:
        """Close once the last replies are out; cut off after ``linger`` seconds.

        The session counts against its client's connection limit until the socket is
        really gone, so a client that leaves unread replies behind cannot pile up sockets.
        """
        transport = self.transport
        if transport is None or self._gone.done():
            return
        # Cutting it off ends the connection, which ends both waits below.
        deadline = clock.call_later(linger, self.cut_off)
        try:
            await self.outbox.handed_over()  # a body may still go out slice by slice
            if not self._gone.done():
                transport.close()
                await asyncio.shield(self._gone)
        finally:
            deadline.cancel()

    def cut_off(self) -> None:
        """Drop the connection; what never left this process is not counted as sent.

        (What the kernel already holds may still reach the client after the close.)
        """
        transport = self.transport
        if transport is None:
            return
        self._observe.unsent(transport.get_write_buffer_size() + self.outbox.drop())
        transport.abort()
