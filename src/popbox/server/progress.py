"""Is a client still there?  The inactivity timer, and whether a silent client still reads.

A session's inactivity timer (V0002) counts from the last command.  A client reading a
long reply sends nothing meanwhile, and asyncio says nothing either until the transport's
buffer drains, which for one large RETR is at its very end; and the last megabytes of any
download wait in the kernel's send queue, where asyncio does not look at all.  So when the
timer runs out the session asks an ``OutputWatch`` whether output is still owed and
whether any of it moved since the previous look: a client that takes its download keeps
its session, one that neither sends nor reads loses it.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import struct
import termios
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from popbox.clock import Clock, Timer

__all__ = ["InactivityTimer", "Output", "OutputWatch", "unsent_octets"]

TIMER_RECHECK = 60.0  # seconds: the longest the inactivity timer sleeps at once
BUSY_RECHECK = 1.0  # seconds: the timer's next look when it expired during a store call

# SIOCOUTQ, the octets the kernel has not had acknowledged yet, is TIOCOUTQ on Linux.
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)


class Output(enum.Enum):
    IDLE = "idle"  # nothing owed: the client is inactive if it sends nothing
    MOVING = "moving"  # owed, and the client took some since the last look
    STUCK = "stuck"  # owed, and not an octet moved since the last look


def unsent_octets(transport: asyncio.BaseTransport) -> int:
    """Octets written to ``transport`` that the client has not received (as far as known)."""
    pending: int = getattr(transport, "get_write_buffer_size", lambda: 0)()
    sock = transport.get_extra_info("socket")
    if sock is not None and _SIOCOUTQ is not None:
        with contextlib.suppress(OSError, ValueError):  # closed, or not a TCP socket
            queued = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
            pending += struct.unpack("i", queued)[0]
    return pending


class OutputWatch:
    """Compares what is owed at each look with the previous look."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def look(self, transport: asyncio.BaseTransport, written: int) -> Output:
        """``written``: every octet handed to the transport so far."""
        pending = unsent_octets(transport)
        mark, last = (written, pending), self._last
        self._last = mark
        if mark == last:
            return Output.STUCK if pending else Output.IDLE
        if pending == 0 and (last is None or last[1] == 0):
            return Output.IDLE  # nothing owed now, nor at the last look
        # Owed octets moved, or the client took the last of them since the last look; or
        # this is the first look, which cannot tell: either way, one more period.
        return Output.MOVING


class InactivityTimer:
    """One session's inactivity timer (V0002): expires when the client has been idle.

    The clock restarts on every command (``touch``) and whenever the client is seen
    taking its output.  Re-armed when it fires rather than moved on every command, so a
    command costs one clock read.  While ``busy()`` (the server itself is answering) it
    never expires; on its deadline it asks ``output()`` whether a silent client still
    takes what it is owed, and only then calls ``expire(stuck)``: ``stuck`` when output
    is owed and none of it moved, so the connection must be dropped, not closed.
    """

    __slots__ = (
        "_busy",
        "_clock",
        "_due",
        "_expire",
        "_handle",
        "_output",
        "_timeout",
        "active_at",
    )

    def __init__(
        self,
        clock: Clock,
        timeout: Callable[[], float],
        busy: Callable[[], bool],
        output: Callable[[], Output],
        expire: Callable[[bool], None],
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._busy = busy
        self._output = output
        self._expire = expire
        self._handle: Timer | None = None
        self._due = 0.0  # when the handle fires (clock.monotonic())
        self.active_at = clock.monotonic()  # the last sign of life from the client

    def touch(self) -> None:
        self.active_at = self._clock.monotonic()

    def arm(self) -> None:
        """Fire when the current timeout ends, if that is sooner than already planned."""
        due = self.active_at + self._timeout()
        if self._handle is not None:
            if self._due <= due:
                return
            self._handle.cancel()
        self._schedule(due - self._clock.monotonic())

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, delay: float) -> None:
        self._due = self._clock.monotonic() + delay
        self._handle = self._clock.call_later(delay, self._fired)

    def _fired(self) -> None:
        self._handle = None
        timeout = self._timeout()
        remaining = self.active_at + timeout - self._clock.monotonic()
        if remaining > 0 or self._busy():  # a slow store is not an idle client
            # Looked at again at least every TIMER_RECHECK seconds, so a timeout that a
            # reload shortened applies to running sessions too.
            self._schedule(min(remaining, TIMER_RECHECK) if remaining > 0 else BUSY_RECHECK)
            return
        output = self._output()
        if output is Output.MOVING:  # a client taking a long download is not inactive
            self.touch()
            self._schedule(min(timeout, TIMER_RECHECK))
            return
        self._expire(output is Output.STUCK)
