"""Is a client still taking the output it is owed?  The inactivity timer's second question.

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

__all__ = ["Output", "OutputWatch", "unsent_octets"]

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
