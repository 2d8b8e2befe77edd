"""This process's copy of the cluster's lockouts, kept current by LISTEN/NOTIFY.

Theory of operation: reading ``login_failures`` before every login was one round trip
per login, about a quarter of a login's CPU on PostgreSQL (measured with bench/).  So
each process keeps a copy of what that check needs, as the workers of a SQLite node do
(``node/shared_guard.py``): the keys locked out and until when, and the user names with
failures to forgive.  Every statement that changes a score also notifies
``CHANNEL`` in the same transaction (``postgres_cluster.py``), so the notification is
delivered exactly when the change commits, to every process listening on the primary.

The copy is used only while it is *live*: its own connection (not the pool's) is
listening and the whole table has been read since that connection was made (LISTEN
first, then the read: nothing committed in between is missed).  The connection being
lost (asyncpg's termination callback), or its server found in recovery (a demoted
primary, checked every ``KEEPALIVE`` seconds together with the connection itself),
ends liveness at once, and ``check`` goes back to asking the database until the copy
has been made again on whichever server is the primary.  Behind a transaction pooler
LISTEN cannot work (each transaction may run on another server connection), so no copy
is kept there and every check asks.

A guess that races the notification of the failure that locks its key out is not
refused by the copy; it would have raced the read of the table as well, and its own
failure is counted all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import asyncpg

from popbox.store.postgres_cluster import CHANNEL

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["KEEPALIVE", "ScoresCopy"]

KEEPALIVE = 10.0  # seconds between looks at the listening connection
RETRY = 1.0  # seconds between attempts to listen again after a loss
_ANSWER_WITHIN = 5.0  # seconds the keepalive query may take before the link counts as lost

_STATE = (
    "SELECT key, locked_until FROM login_failures"
    " WHERE locked_until > extract(epoch FROM clock_timestamp()) OR left(key, 2) = 'u:'"
)
# What the driver or the network raise when the listening connection cannot be kept.
_LINK_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class ScoresCopy:
    """Lockouts (wall-clock ends, by key) and scored users, as the database has them."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection[Any]]],
        wall: Callable[[], float],
        *,
        max_tracked: int = 100_000,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._connect = connect
        self._wall = wall
        self.max_tracked = max_tracked
        self._keepalive = keepalive
        self._locked_until: dict[str, float] = {}
        self._scored: OrderedDict[str, None] = OrderedDict()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.live = False
        """Whether ``check`` may answer: listening, and the table read since."""

    def start(self) -> None:
        """Begin listening (on the running loop), and keep at it until ``close``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        task, self._task = self._task, None
        self.live = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def check(self, keys: list[str], user_key: str) -> tuple[float, bool]:
        """As ``PostgresScores.check``: (latest end of a lockout of ``keys``, scored)."""
        until = max((self._locked_until.get(key, 0.0) for key in keys), default=0.0)
        return until, user_key in self._scored

    def apply(self, update: dict[str, Any]) -> None:
        """Take one notification: ``locks`` (key: end) of a failure, or ``forgiven``."""
        for key, until in (update.get("locks") or {}).items():
            self._note(str(key), float(until))
        for key in update.get("forgiven") or ():  # the row is gone, its lockout with it
            self._scored.pop(str(key), None)
            self._locked_until.pop(str(key), None)
        self._bound()

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(*_LINK_ERRORS):
                await self._listen()
            self.live = False
            await asyncio.sleep(RETRY)

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            self._lost.clear()
            conn.add_termination_listener(lambda _conn: self._lose())
            await conn.add_listener(CHANNEL, self._notified)
            rows = await conn.fetch(_STATE)
            self._locked_until.clear()
            self._scored.clear()
            for row in rows:
                self._note(row["key"], float(row["locked_until"]))
            self._bound()
            self.live = True
            while not self._lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._keepalive)
                    break
                async with asyncio.timeout(_ANSWER_WITHIN):
                    if await conn.fetchval("SELECT pg_is_in_recovery()"):
                        break  # demoted: the primary is elsewhere now
        finally:
            self.live = False
            conn.terminate()

    def _lose(self) -> None:
        self.live = False
        self._lost.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            update = json.loads(str(payload))
        except ValueError:
            return  # not ours: only popbox's statements notify on this channel
        if isinstance(update, dict):
            self.apply(update)

    def _note(self, key: str, until: float) -> None:
        if until > 0:
            self._locked_until[key] = max(until, self._locked_until.get(key, 0.0))
        if key.startswith("u:"):
            self._scored[key] = None
            self._scored.move_to_end(key)

    def _bound(self) -> None:
        while len(self._scored) > self.max_tracked:
            self._scored.popitem(last=False)
        if len(self._locked_until) > self.max_tracked:
            now = self._wall()  # lockouts that are over are never read again
            self._locked_until = {k: t for k, t in self._locked_until.items() if t > now}
