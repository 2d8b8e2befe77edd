"""Time as an input: the one clock a server's timers, leases, retention and delays read.

Theory of operation: ``serve`` builds one ``Clock`` and puts it in the server context;
everything with a timer or a timestamp takes it from there instead of calling ``time`` or
``asyncio.sleep`` itself: the inactivity timers (``server/progress.py``), the brute-force
guard's decay, the failed-login delay, lock leases and their renewal, the retention sweep
and UPDATE's retrieved-at stamp.  ``SystemClock`` is the real one.  Tests pass
``popbox.testing.ManualClock`` and move time on with ``advance`` instead of sleeping.

The protocol doesn't expect the two readings to agree: ``monotonic`` is for durations
(timeouts, decay), ``wall`` for POSIX timestamps that are stored or compared across
processes (leases, retrieved-at, retention cut-offs).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Clock", "SystemClock", "Timer"]


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
