"""A process's copy of brute-force lockouts and scored users whose owner is elsewhere.

Theory of operation: when the scores of ``auth/bruteforce.py`` are shared, they live in one
owner, the supervisor of a node (``node/shared_guard.py``) or the PostgreSQL database of
a cluster (``store/postgres_scores_copy.py``), and asking it before every login cost a
round trip.  So each process keeps what the check before a password needs, in a
``Lockouts``: the keys (``keys_of``) locked out, with the time each lockout ends, and
the user keys (``user_key``) with failures that a success would forgive.  The keeper
turns the owner's updates into ``lock``, ``lift``, ``score`` and ``forgive``, and
``check`` is answered from the copy.  The two keepers differ only in their updates and
their clock: the supervisor sends the seconds a lockout has left, which a worker turns
into an end on its monotonic clock; the database sends the end itself, in POSIX
seconds.  Every end a ``Lockouts`` holds is on the clock it was made with, the one it
reads to answer and to bound itself.

Memory is bounded by ``max_tracked``, as the owner's is: past it, the scored users noted
longest ago are dropped first, and the lockouts that are over.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["Lockouts"]


class Lockouts:
    """Lockout ends by key, and scored user keys, on the clock ``clock`` reads."""

    def __init__(self, clock: Callable[[], float], *, max_tracked: int = 100_000) -> None:
        self._clock = clock
        self.max_tracked = max_tracked  # as [auth] max_tracked: bounds each of the two
        self._ends: dict[str, float] = {}
        self._scored: OrderedDict[str, None] = OrderedDict()  # user keys, oldest first

    def lock(self, key: str, until: float) -> None:
        """``key`` is locked out until ``until``, whatever end was known before."""
        self._ends[key] = until

    def lift(self, key: str) -> None:
        self._ends.pop(key, None)

    def score(self, key: str) -> None:
        """The user key ``key`` has failures to forgive; it is now the newest."""
        self._scored[key] = None
        self._scored.move_to_end(key)

    def forgive(self, key: str) -> None:
        """The owner forgot the user key ``key`` (a success): its score, and with it any
        lockout of it, as ``LoginGuard.succeeded`` and the table's DELETE both do."""
        self._scored.pop(key, None)
        self._ends.pop(key, None)

    def clear(self) -> None:
        self._ends.clear()
        self._scored.clear()

    def bound(self) -> None:
        """Drop what is past ``max_tracked``: the oldest scored users, ended lockouts."""
        while len(self._scored) > self.max_tracked:
            self._scored.popitem(last=False)  # the owner forgets these first too
        if len(self._ends) > self.max_tracked:
            now = self._clock()  # a lockout that is over is never answered again
            self._ends = {key: end for key, end in self._ends.items() if end > now}

    def until(self, keys: Iterable[str]) -> float:
        """The latest end of a lockout of ``keys``, over or not; 0.0 when none is known."""
        return max((self._ends.get(key, 0.0) for key in keys), default=0.0)

    def remaining(self, keys: Iterable[str]) -> float:
        """Seconds until none of ``keys`` is locked out; 0.0 when none is now.

        A lockout of ``keys`` found over is dropped on the way.
        """
        now = self._clock()
        remaining = 0.0
        for key in keys:
            end = self._ends.get(key)
            if end is not None:
                if end <= now:
                    del self._ends[key]  # it would only take room until ``bound``
                else:
                    remaining = max(remaining, end - now)
        return remaining

    def scored(self, key: str) -> bool:
        return key in self._scored
