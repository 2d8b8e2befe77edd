"""A one-line progress bar for long imports, drawn on a terminal only.

Redrawn at most ten times a second, so it costs nothing measurable on a fast import; on
anything that is not a terminal (a pipe, a log file, cron) it draws nothing at all.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 30
_INTERVAL = 0.1


class ProgressBar:
    """``bar(done, total)`` redraws; ``bar.finish()`` ends the line."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._enabled = stream.isatty() if enabled is None else enabled
        self._clock = clock
        self._last = -_INTERVAL
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = self._clock()
        if done < total and now - self._last < _INTERVAL:
            return
        self._last = now
        share = done / total if total else 1.0
        filled = int(share * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total} {share:4.0%}")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
