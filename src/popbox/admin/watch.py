"""Live protocol-log subscribers: who watches which user, and handing each line to them.

The process serving the admin listener keeps one ``Watchers``.  When the set of watched
users changes, ``on_change`` is called with the new set, so that the sessions (in this
process, or in every worker over the control channel) start or stop copying lines.
Each subscriber has a bounded queue: a browser that stops reading loses lines (it is
told how many), never the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["QUEUE_LINES", "Subscription", "Watchers"]

QUEUE_LINES = 1000  # lines one subscriber may fall behind before lines are dropped


class Subscription:
    """One subscriber's lines, in order; ``dropped`` counts what did not fit."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LINES)
        self.dropped = 0

    def put(self, line: dict[str, Any]) -> None:
        try:
            self.lines.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1


class Watchers:
    def __init__(self, on_change: Callable[[frozenset[str]], None]) -> None:
        self._on_change = on_change
        self._by_user: dict[str, set[Subscription]] = {}

    @property
    def users(self) -> frozenset[str]:
        return frozenset(self._by_user)

    @contextlib.asynccontextmanager
    async def subscribe(self, user: str) -> AsyncIterator[Subscription]:
        subscription = Subscription()
        subscribers = self._by_user.setdefault(user, set())
        subscribers.add(subscription)
        if len(subscribers) == 1:
            self._on_change(self.users)
        try:
            yield subscription
        finally:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_user[user]
                self._on_change(self.users)

    def deliver(self, line: dict[str, Any]) -> None:
        """One protocol line from a session: to every subscriber of its user."""
        for subscription in self._by_user.get(str(line.get("user")), ()):
            subscription.put(line)
