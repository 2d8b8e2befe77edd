"""Bodies read ahead on PostgreSQL, under a lease that every removal waits out (C0004).

Theory of operation: a client downloading its maildrop sends RETR 1, RETR 2, ... and on
PostgreSQL each of them was a round trip to the database: for small messages most of
the command's cost, on both sides of the connection.  So a session that asks for
consecutive messages reads the next few small bodies in one statement
(``popbox_read_ahead``, migration 0007) and answers the following RETRs from that copy,
without asking the database again.

C0004 forbids answering from a copy blindly: RETR of a message that another session or
node removed, once that removal has committed, must get -ERR.  Other nodes cannot be
told in time (a notification would race the RETR), so the copy is a *lease* instead:

- the statement that reads the copy first stamps the mailbox's ``read_ahead`` row with
  the database's clock plus ``LIFETIME``, and the session uses the copy only until its
  own monotonic clock, read *before* the statement was sent, is ``LIFETIME`` further on:
  the copy always expires no later than the stamp;
- every transaction that removes messages (UPDATE, ``delete``, ``expire``,
  ``delete_user``) first locks that row (``hold_off``) and, while a lease of another
  holder is still running, waits for it to run out before it removes anything.  The
  lock orders the two: a copy read after the removal's lock was taken is read after the
  removal committed (it does not hold the message); a copy stamped before it is one the
  removal waits for.  The removal commits only when no copy that may hold its messages
  can still be used, so no RETR after the commit is answered with a removed body.

A session's own copies never hold up its own UPDATE (it ends the session, and with it
the copies): the row names the last holder, and keeps the earlier holders' lease
separately; UPDATE also ends its session's lease when it is still the last holder's
(``postgres_ops.COMMIT_UPDATE``).  So a removal waits only when another session is
reading ahead in the mailbox (or the row is unknown, below), and then at most
``LIFETIME``; meanwhile other sessions' read-aheads in that mailbox wait for its row
lock (deliveries do not: they never touch ``read_ahead``).

The table is UNLOGGED (a stamp writes no WAL and waits for no flush).  A crash, or a
standby promoted in a failover, empties it, and row 0 with it: a removal that finds row
0 missing cannot know which copies are still in use, waits one whole ``LIFETIME``, and
puts row 0 back.  The stamp is taken on the database's clock and the lease measured on
the node's monotonic clock (for ``USED_SHARE`` of it), so the two clocks need not agree,
only run at nearly the same rate over ``LIFETIME`` (a second): a database clock stepped
forward by more than the remaining lease is the one case this does not cover.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.base import MessageInfo

    Conn = PoolConnectionProxy[asyncpg.Record]

__all__ = [
    "AHEAD_BUDGET",
    "AHEAD_COUNT",
    "AHEAD_OCTETS",
    "LIFETIME",
    "READ_AHEAD",
    "USED_SHARE",
    "AheadBudget",
    "LeasedCopy",
    "hold_off",
    "run_from",
]

# Seconds a copy may be used: long enough for a client on a slow link to ask for the
# next bodies (sixteen RETRs at 60 ms each), short enough that a removal held up by it
# is only slowed down.
LIFETIME = 1.0
# A copy is used for this share of its lease only: the node's and the database's clocks
# may then run at rates up to 2% apart (NTP keeps them within 0.05%).
USED_SHARE = 0.98
# One statement serves up to this many RETRs.  A round trip to the database costs more
# than SQLite's read transaction, so more of them are saved per read than there: measured
# on one connection, a statement costs about as much CPU (both sides) as 25 bodies of
# 4 KiB or 100 KiB of body, so 64 small bodies or five of 100 KiB per statement make
# the statement's own cost a small share.
AHEAD_COUNT = 64
AHEAD_OCTETS = 512 * 1024
# What the copies of every session of a process may hold together: past it a session
# reads its bodies one by one, as without read-ahead, so that many sessions downloading
# at once do not multiply AHEAD_OCTETS.
AHEAD_BUDGET = 64 * 1024 * 1024

READ_AHEAD = "SELECT uid, wire FROM popbox_read_ahead($1, $2, $3::bigint[], $4)"
# Lock the mailbox's lease row (created if this is its first) and learn how long the
# leases of holders other than $2 still run, on the database's clock.  ``known``: row 0
# is there, so no stamp was lost to a crash or a failover since it was put back.
_HOLD_OFF = (
    "WITH u AS (SELECT id FROM users WHERE name = $1),"
    " lease AS (INSERT INTO read_ahead AS r (user_id, holder, until, others_until)"
    "  SELECT id, '', 0, 0 FROM u"
    "  ON CONFLICT (user_id) DO UPDATE SET holder = r.holder"
    "  RETURNING CASE WHEN r.holder = $2 THEN r.others_until"
    "   ELSE greatest(r.until, r.others_until) END"
    "   - extract(epoch FROM clock_timestamp()) AS left_s)"
    " SELECT (SELECT left_s FROM lease) AS left_s,"
    " EXISTS (SELECT 1 FROM read_ahead WHERE user_id = 0) AS known"
)
_RESTORE_KNOWN = (
    "INSERT INTO read_ahead (user_id, holder, until, others_until) VALUES (0, '', 0, 0)"
    " ON CONFLICT (user_id) DO NOTHING"
)


async def hold_off(conn: Conn, name: str, holder: str = "", lifetime: float = LIFETIME) -> None:
    """Inside a removing transaction, before it removes: wait out other holders' leases.

    ``holder`` is the removing session's own name (its copies are not waited for);
    ``lifetime`` is how long the copies of sessions whose stamps were lost may be used.
    The row lock taken here is held until the transaction ends.
    """
    row = await conn.fetchrow(_HOLD_OFF, name, holder)
    assert row is not None, "a SELECT without FROM returns one row"
    left: float | None = row["left_s"]  # None: no such user, nothing to remove
    if not row["known"]:
        left = lifetime  # copies stamped before a crash or a failover may still be used
        await conn.execute(_RESTORE_KNOWN)
    if left is not None and left > 0:
        await asyncio.sleep(left)


def run_from(messages: Sequence[MessageInfo], index: int) -> tuple[list[int], int]:
    """Uids from ``index`` on, at most ``AHEAD_COUNT`` of them and ``AHEAD_OCTETS``, and
    their octets."""
    uids: list[int] = []
    total = 0
    for info in messages[index : index + AHEAD_COUNT]:
        if total + info.stored_size > AHEAD_OCTETS:
            break
        total += info.stored_size
        uids.append(info.uid)
    return uids, total


class AheadBudget:
    """The octets the copies of a process's sessions hold, against ``limit``."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int = AHEAD_BUDGET) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, octets: int) -> bool:
        """Count ``octets`` if they fit; False: read without a copy."""
        if self.held + octets > self.limit:
            return False
        self.held += octets
        return True

    def release(self, octets: int) -> None:
        self.held -= octets


class LeasedCopy:
    """Some bodies of one mailbox, by uid, usable until ``expires`` (monotonic seconds).

    Its octets are counted in ``budget`` until each body is handed out, the lease runs
    out or the copy is dropped.
    """

    __slots__ = ("_bodies", "_budget", "_expires")

    def __init__(self, bodies: dict[int, bytes], expires: float, budget: AheadBudget) -> None:
        self._bodies = bodies
        self._expires = expires
        self._budget = budget

    def take(self, uid: int) -> bytes | None:
        """``uid``'s body, handed out once; None: not read, or the lease ran out: read it."""
        if time.monotonic() >= self._expires:
            self.drop()
            return None
        body = self._bodies.pop(uid, None)
        if body is not None:
            self._budget.release(len(body))
        return body

    def drop(self) -> None:
        """Forget every body not handed out yet."""
        self._budget.release(sum(map(len, self._bodies.values())))
        self._bodies.clear()

    def __len__(self) -> int:
        return len(self._bodies)
