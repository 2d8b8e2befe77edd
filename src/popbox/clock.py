"""Time as an input: the one clock a server's timers, leases, retention and delays read.

Theory of operation: ``serve`` builds one ``Clock`` and puts it in the server context;
everything with a timer or a timestamp takes it from there instead of calling ``time`` or
``asyncio.sleep`` itself: the inactivity timers (``server/progress.py``), the brute-force
guard's decay, the failed-login delay, lock leases and their renewal, the retention sweep
and UPDATE's retrieved-at stamp.  ``SystemClock`` is the real one.  Tests pass
``ManualClock`` (below) and move time on with ``advance`` instead of sleeping.

The protocol doesn't expect the two readings to agree: ``monotonic`` is for durations
(timeouts, decay), ``wall`` for POSIX timestamps that are stored or compared across
processes (leases, retrieved-at, retention cut-offs).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "SystemClock", "Timer"]


class Timer(Protocol):
    """What ``call_later`` returns: a pending callback that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic and wall time, timers and sleeps, as one injectable object."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
        ...

    def wall(self) -> float:
        """POSIX seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` on the running event loop once ``delay`` seconds have passed."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""
        ...


class SystemClock:
    """The real clock: ``time`` and the running event loop."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


# -- for tests: time that moves only when told ---------------------------------------


class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A ``Clock`` that stands still until ``advance``: timers fire, sleeps end, in order.

    Use it from the thread of the event loop the code under test runs on (``advance`` calls
    the due callbacks there and then).  ``wall`` starts at ``wall_start`` and moves with
    ``monotonic``.
    """

    def __init__(self, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = 0.0
        self._wall_offset = wall_start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()  # equal deadlines fire in the order they were set

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_offset + self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> _ManualTimer:
        timer = _ManualTimer(callback)
        heapq.heappush(self._timers, (self._now + max(0.0, delay), next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_later(delay, wake)
        await done

    def advance(self, seconds: float) -> int:
        """Move time on by ``seconds``, firing what falls due; returns how many fired.

        A callback that sets a timer within the window fires in the same call.
        """
        until = self._now + seconds
        fired = 0
        while self._timers and self._timers[0][0] <= until:
            due, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            if not timer.cancelled:
                fired += 1
                timer.callback()
        self._now = until
        return fired

    def pending(self) -> int:
        """Timers set and neither fired nor cancelled."""
        return sum(not timer.cancelled for _, _, timer in self._timers)
