"""This process's copy of the cluster's lockouts, kept current by LISTEN/NOTIFY.

Theory of operation: reading ``login_failures`` before every login was one round trip
per login, about a quarter of a login's CPU on PostgreSQL (measured with bench/).  So
each process keeps a copy of what that check needs, in the same ``Lockouts`` as the
workers of a SQLite node (``lockouts.py``; ``node/shared_guard.py``): the keys
locked out and until when, and the user names with failures to forgive.  Here the ends
are the table's ``locked_until``, wall-clock POSIX seconds, and a copy keeps the later
of two ends it is told for one key.  Every statement that changes a score also notifies
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

The same connection also listens for changes to user records, for the process's copy of
them (``postgres_accounts_copy.AccountsCopy``), which is live exactly while this copy
is.

A guess that races the notification of the failure that locks its key out is not
refused by the copy; it would have raced the read of the table as well, and its own
failure is counted all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import asyncpg

from popbox.lockouts import Lockouts
from popbox.store import postgres_accounts_copy as accounts
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
    """The database's lockouts and scored users, in a ``Lockouts`` on the wall clock."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection[Any]]],
        wall: Callable[[], float],
        *,
        max_tracked: int = 100_000,
        keepalive: float = KEEPALIVE,
        records: accounts.AccountsCopy | None = None,
    ) -> None:
        self._connect = connect
        self._records = records if records is not None else accounts.AccountsCopy()
        self._copy = Lockouts(wall, max_tracked=max_tracked)  # ends: locked_until, POSIX
        self._keepalive = keepalive
        self._lost = asyncio.Event()
        # Updates heard while the table is read: applied after it, since one may be of a
        # change the read's snapshot does not hold yet (applying one twice is harmless).
        self._held: list[dict[str, Any]] | None = None
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
        self._records.end()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def check(self, keys: list[str], user_key: str) -> tuple[float, bool]:
        """As ``PostgresScores.check``: (latest end of a lockout of ``keys``, scored)."""
        return self._copy.until(keys), self._copy.scored(user_key)

    def apply(self, update: dict[str, Any]) -> None:
        """Take one notification: ``locks`` (key: end) of a failure, or ``forgiven``."""
        for key, until in (update.get("locks") or {}).items():
            self._note(str(key), float(until))
        for key in update.get("forgiven") or ():  # the row is gone, its lockout with it
            self._copy.forgive(str(key))
        self._copy.bound()

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
            self._held = []
            await conn.add_listener(CHANNEL, self._notified)
            await conn.add_listener(accounts.CHANNEL, self._record_changed)
            rows = await conn.fetch(_STATE)
            self._copy.clear()
            for row in rows:
                self._note(row["key"], float(row["locked_until"]))
            held, self._held = self._held, None
            for update in held:
                self.apply(update)
            self._copy.bound()
            self.live = True
            self._records.begin()
            while not self._lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._keepalive)
                    break
                async with asyncio.timeout(_ANSWER_WITHIN):
                    if await conn.fetchval("SELECT pg_is_in_recovery()"):
                        break  # demoted: the primary is elsewhere now
        finally:
            self.live = False
            self._records.end()
            self._held = None
            conn.terminate()

    def _lose(self) -> None:
        self.live = False
        self._records.end()
        self._lost.set()

    def _record_changed(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._records.heard(str(payload))

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            update = json.loads(str(payload))
        except ValueError:
            return  # not ours: only popbox's statements notify on this channel
        if isinstance(update, dict):
            if self._held is not None:
                self._held.append(update)
            else:
                self.apply(update)

    def _note(self, key: str, until: float) -> None:
        if until > 0:  # 0: the row was never locked out
            # The later of two ends is kept: a node whose clock is a little behind may
            # lock the row again until a little earlier.
            self._copy.lock(key, max(until, self._copy.until([key])))
        if key.startswith("u:"):  # a user's row: failures a success would forgive
            self._copy.score(key)
