"""The process's memory budget for message bodies being sent (``server.memory_budget``).

Theory of operation: a body is held in memory from the moment it is read until the last
of it has left the process (``server/outbox.py``); a client that stops reading keeps it
there.  Each session reserves a large body's size here before reading it (twice its size
while the read runs, see ``READ_COPIES``) and gives it back once sent, so the sum of what
slow readers can pin is capped: a RETR that does not fit waits, first come first served,
for others to finish, and is refused with ``-ERR [SYS/TEMP]`` if nothing frees up in
time.  A body larger than the whole budget is admitted when nothing else is held, so that
it can still be downloaded.  Small bodies are not counted: each session holds at most one
beyond its transport's buffer, which the connection limits bound.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from popbox.server.outbox import STREAM_SLICE

if TYPE_CHECKING:
    from popbox.clock import Clock, Timer
    from popbox.server.outbox import Outbox
    from popbox.store.base import MessageInfo

__all__ = ["BODY_WAIT", "READ_COPIES", "BodyHold", "MemoryBudget", "counted_size"]

BODY_WAIT = 10.0  # seconds a body waits for room before -ERR [SYS/TEMP]
# While a large body is being read it is in memory twice: the database driver assembles
# the BLOB in a buffer of its own, then copies it into the bytes the store returns.
READ_COPIES = 2
SETTLE_RECHECK = 1.0  # seconds between looks at whether a sent body has left the process


class MemoryBudget:
    """Octets reserved for bodies in flight, against a limit (0: unlimited)."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self.clock = clock
        self.held = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[bool]]] = collections.deque()

    def try_reserve(self, octets: int) -> bool:
        """Reserve ``octets`` now if they fit and nobody waits before; False otherwise."""
        if self._waiting or not self._fits(octets):
            return False
        self.held += octets
        return True

    async def reserve(self, octets: int, wait: float = BODY_WAIT) -> bool:
        """Reserve ``octets``, waiting up to ``wait`` seconds for room; False: no room."""
        if self.try_reserve(octets):
            return True
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (octets, answer)
        self._waiting.append(entry)
        timer = self.clock.call_later(wait, lambda: self._give_up(entry))
        try:
            return await answer
        except asyncio.CancelledError:  # the session ended while waiting
            self._give_up(entry)
            if answer.done() and not answer.cancelled() and answer.result():
                self.release(octets)
            raise
        finally:
            timer.cancel()

    def _give_up(self, entry: tuple[int, asyncio.Future[bool]]) -> None:
        if entry in self._waiting:
            self._waiting.remove(entry)
            if not entry[1].done():
                entry[1].set_result(False)
            self._admit()  # the head gave up: the next may fit

    def release(self, octets: int) -> None:
        self.held -= octets
        self._admit()

    def _fits(self, octets: int) -> bool:
        return not self.limit or self.held == 0 or self.held + octets <= self.limit

    def _admit(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            octets, answer = self._waiting.popleft()
            if not answer.done():
                self.held += octets
                answer.set_result(True)


class BodyHold:
    """One session's share of the budget: the large bodies it read and has not yet sent.

    Released only once the outbox reports everything gone from the process: a slice still
    queued in a transport keeps the whole body it was cut from alive.  When the last of
    it waits in the transport, nothing calls back once that drains: ``settle`` then looks
    again every ``SETTLE_RECHECK`` seconds.
    """

    __slots__ = ("_budget", "_clock", "_timer", "octets")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._clock = budget.clock
        self._timer: Timer | None = None
        self.octets = 0

    def settle(self, outbox: Outbox) -> None:
        """Give the budget back if the bodies sent have left the process."""
        if not self.octets:
            return
        if outbox.settled():
            self.release()
        elif self._timer is None:
            self._timer = self._clock.call_later(SETTLE_RECHECK, lambda: self._recheck(outbox))

    def _recheck(self, outbox: Outbox) -> None:
        self._timer = None
        self.settle(outbox)

    def take_now(self, info: MessageInfo) -> bool:
        """Reserve room for reading ``info``'s body if it is counted and fits now."""
        octets = counted_size(info) * READ_COPIES
        if not octets:
            return True
        if not self._budget.try_reserve(octets):
            return False
        self.octets += octets
        return True

    async def take(self, info: MessageInfo) -> bool:
        """Reserve room for reading ``info``'s body, waiting for it; False: refuse the RETR."""
        octets = counted_size(info) * READ_COPIES
        if octets and not await self._budget.reserve(octets):
            return False
        self.octets += octets
        return True

    def read_done(self, info: MessageInfo) -> None:
        """The read of ``info``'s body is over: the driver's copy of it is gone."""
        extra = counted_size(info) * (READ_COPIES - 1)
        if extra:
            self._budget.release(extra)
            self.octets -= extra

    def release(self) -> None:
        """Give back everything held (also when the session ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.octets:
            self._budget.release(self.octets)
            self.octets = 0


def counted_size(info: MessageInfo) -> int:
    """The octets a body counts against the budget: 0 for bodies sent in one piece."""
    octets = max(info.size, info.stored_size)
    return octets if octets > STREAM_SLICE else 0
