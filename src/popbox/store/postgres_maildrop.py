"""A session's maildrop on PostgreSQL, and how a commit whose reply was lost is resolved.

Theory of operation: every read crosses the network, so ``body_now`` answers only from
a copy read ahead and still under its lease (``store/postgres_readahead.py``), and
otherwise defers to ``body``.  ``body`` reads the next few small bodies of the snapshot
in one statement when the session asks for the message after the one it last asked for
(or for the first), and any other body alone.

A commit's reply can be lost: the connection dies after COMMIT was sent, and the
transaction may or may not have committed.  So the commits whose answer a client or an
MTA acts on (UPDATE, a keyed delivery) write a row naming themselves in the same
transaction (a commit token, a delivery key with the delivery's own stamp), and when
such a commit ends with the connection gone, ``run_commit`` reconnects and looks for
that row before anything is answered.  The look-up is only final once the old session
has finished its transaction: a session still running the COMMIT may yet make it, so
``run_commit`` waits until the server lists the old backend as idle or not at all
(ending it if it sits idle in its transaction, COMMIT never having arrived).  When the
look-up lands on another server than the lost connection's (a standby promoted in the
meantime: ``postgres_failover``), the old session's server is gone and what the new
primary holds is final.  When commits count only once a synchronous standby has them
(``[storage] synchronous_commit``), a commit found by the look-up is confirmed by a
commit of the look-up's own (``barrier``), which returns only once the standby has the
WAL up to it, and so the first commit's too.  All of it is bounded: past the bound the
answer is ``CommitOutcomeUnknown``, and the client is told that it cannot be known.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from bisect import bisect_left
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg

from popbox.store import postgres_readahead as ahead
from popbox.store.base import CommitOutcomeUnknown, Pending, StoreTemporaryError
from popbox.store.postgres_failover import server_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.base import MessageInfo

    Conn = PoolConnectionProxy[asyncpg.Record]
    Connect = Callable[[], AbstractAsyncContextManager[Conn]]

__all__ = ["PostgresAccess", "PostgresMaildrop", "run_commit"]

_T = TypeVar("_T")
_UID = attrgetter("uid")

RETRY_INTERVAL = 0.05  # seconds between look-ups while the old session is still there

# A backend that COMMIT never reached: ending it rolls its transaction back at once.
_END_IF_IDLE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE pid = $1 AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
)
# Still running (the COMMIT, say): its outcome is not final yet.  An idle backend has
# finished its transaction one way or the other; the pool may even have handed that
# same connection back for the look-up.
_STILL_BUSY = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE pid = $1 AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
)


class PostgresAccess(Protocol):
    """What a handle needs of ``PostgresStore``, named here so that this module need not
    import the store that imports it."""

    async def fetch(self, name: str, uid: int) -> bytes | None: ...

    async def fetch_ahead(
        self, name: str, holder: str, uids: Sequence[int], lifetime: float
    ) -> dict[int, bytes]: ...

    async def commit_update(
        self,
        name: str,
        deleted: Sequence[int],
        retrieved: Sequence[int],
        at: float,
        *,
        holder: str = "",
    ) -> int: ...


class PostgresMaildrop:
    """A ``MaildropHandle`` on ``store`` for ``name``, over the snapshot ``messages``."""

    __slots__ = (
        "_ahead",
        "_budget",
        "_holder",
        "_lifetime",
        "_name",
        "_next",
        "_store",
        "messages",
    )

    def __init__(
        self,
        store: PostgresAccess,
        name: str,
        messages: Sequence[MessageInfo],
        *,
        lifetime: float = ahead.LIFETIME,
        budget: ahead.AheadBudget | None = None,
    ) -> None:
        self._store = store
        self._name = name
        self.messages = messages
        self._lifetime = lifetime
        self._budget = budget if budget is not None else ahead.AheadBudget()
        # This session's name on its leases, so its own UPDATE does not wait for them;
        # drawn at the first read-ahead ("" never names a lease: nothing to skip).
        self._holder = ""
        self._next = 0  # the index in ``messages`` a download would ask for next
        self._ahead: ahead.LeasedCopy | None = None

    def body_now(self, uid: int) -> bytes | Pending:
        if self._ahead is not None:
            wire = self._ahead.take(uid)
            if wire is not None:
                self._advance(uid)
                return wire
        return Pending.FETCH  # any other read is a round trip to the server

    async def body(self, uid: int) -> bytes | None:
        index, consecutive = self._advance(uid)
        if self._ahead is not None:
            wire = self._ahead.take(uid)  # body_now was not asked first
            if wire is not None:
                return wire
        if consecutive:
            run, octets = ahead.run_from(self.messages, index)
            if len(run) > 1 and self._budget.reserve(octets):
                return await self._read_ahead(uid, run, octets)
        # Not consecutive, too large to read ahead, the last one, or the process's copies
        # hold their budget: read it alone.
        return await self._store.fetch(self._name, uid)

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        self._drop_ahead()
        if not deleted and not retrieved:
            return 0  # a QUIT that changes nothing costs no transaction
        return await self._store.commit_update(
            self._name, deleted, retrieved, at, holder=self._holder
        )

    async def close(self) -> None:
        self._drop_ahead()

    async def _read_ahead(self, uid: int, run: list[int], octets: int) -> bytes | None:
        """``uid``'s body, read with the ``run`` after it (``octets`` already reserved)."""
        # The lease is measured from before the statement is sent, so the copy
        # expires no later than the stamp the database gives it.
        expires = time.monotonic() + self._lifetime * ahead.USED_SHARE
        self._holder = self._holder or secrets.token_hex(8)
        try:
            bodies = await self._store.fetch_ahead(self._name, self._holder, run, self._lifetime)
        except BaseException:
            self._budget.release(octets)
            raise
        # Absent from ``bodies``: removed since the snapshot (C0004).
        wire = bodies.pop(uid, None)
        self._budget.release(octets - sum(map(len, bodies.values())))
        self._drop_ahead()
        self._ahead = ahead.LeasedCopy(bodies, expires, self._budget)
        return wire

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.drop()
            self._ahead = None

    def _advance(self, uid: int) -> tuple[int, bool]:
        """``uid``'s index in the snapshot, and whether it is the one after the last asked."""
        index = self._next
        messages = self.messages
        consecutive = index < len(messages) and messages[index].uid == uid
        if not consecutive:
            index = bisect_left(messages, uid, key=_UID)
        self._next = index + 1
        return index, consecutive


async def run_commit(
    connect: Connect,
    work: Callable[[Conn], Awaitable[_T]],
    committed: Callable[[Conn], Awaitable[_T | None]],
    bound: float,
    *,
    barrier: Callable[[Conn], Awaitable[object]] | None = None,
) -> _T:
    """``work``'s result; if its connection was lost, ``committed``'s once it is final.

    ``committed`` reads what ``work`` wrote in its transaction: its result, or None when
    that transaction did not commit (then the original ``StoreTemporaryError`` is
    raised: nothing happened, try again).  ``barrier``, when given, is a write committed
    after a found outcome and before it is returned (see the module's docstring).
    """
    server: tuple[str, int] | None = None
    try:
        async with connect() as conn:
            server = (server_of(conn), conn.get_server_pid())
            return await work(conn)
    except StoreTemporaryError as exc:
        if server is None or not _reply_lost(exc):
            raise
        outcome = await _final_outcome(connect, server, committed, bound, barrier)
        if outcome is None:
            raise
        return outcome


def _reply_lost(exc: StoreTemporaryError) -> bool:
    """Whether the failure may have come after the server committed.

    An error the server reported ended the transaction without committing it; any
    other failure (the connection reset, closed, timed out) leaves it open.
    """
    cause: Any = exc.__cause__
    return not isinstance(cause, asyncpg.PostgresError) or isinstance(
        cause, asyncpg.PostgresConnectionError
    )


async def _final_outcome(
    connect: Connect,
    server: tuple[str, int],
    committed: Callable[[Conn], Awaitable[_T | None]],
    bound: float,
    barrier: Callable[[Conn], Awaitable[object]] | None,
) -> _T | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    unknown = "the outcome of a commit whose reply was lost could not be learnt in time"
    # Bounded by the deadline: every pass either returns, raises or sleeps a while.
    while True:
        try:
            async with connect() as conn:
                started, server_pid = server
                # Another server: the old one is gone, and this one's data is final.
                moved = bool(started) and server_of(conn) != started
                ended = moved or await _session_ended(conn, server_pid, deadline)
                outcome = await committed(conn) if ended else None
                if outcome is not None and barrier is not None:
                    await barrier(conn)
        except StoreTemporaryError as exc:
            if loop.time() >= deadline:
                raise CommitOutcomeUnknown(unknown) from exc
            await asyncio.sleep(RETRY_INTERVAL)
            continue
        if not ended:
            raise CommitOutcomeUnknown(unknown)
        return outcome


async def _session_ended(conn: Conn, server_pid: int, deadline: float) -> bool:
    """Whether backend ``server_pid``'s transaction is over (ended if COMMIT never came)."""
    loop = asyncio.get_running_loop()
    await conn.execute(_END_IF_IDLE, server_pid)
    while await conn.fetchval(_STILL_BUSY, server_pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(RETRY_INTERVAL)
    return True
