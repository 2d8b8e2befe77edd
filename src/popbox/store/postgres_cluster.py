"""State every node of a cluster shares through PostgreSQL: brute-force scores, session slots.

Theory of operation: ``PostgresScores`` keeps the scores of ``auth/bruteforce.py`` in the
``login_failures`` table, one row per source IP and per user name, so that every
worker of every node counts the same failures.  Each operation is one statement, one
round trip: ``check`` reads both rows, ``failed`` decays, increments and locks both in
one upsert (purging at most ``PURGE_BATCH`` faded rows on the way, so the table holds
what still matters and a login's cost stays bounded), ``succeeded`` deletes the user's
row.  ``failed`` and ``succeeded`` also notify ``CHANNEL`` in their statement, so every
process's copy of the lockouts (``postgres_scores_copy.py``) learns the change when it
commits, and ``check`` is answered from that copy while it is live: a login then costs
no round trip for the check.  Times are wall-clock seconds from the injected clock:
every node must agree on them (NTP), as the maildrop lock's lease already requires.

``PostgresSessions`` enforces ``[server] max_sessions_per_user`` across nodes: a session
takes one of its user's slots ``0 .. limit-1`` in ``user_sessions`` with a lease;
taking one is one statement that finds a free (or expired) slot and claims it, and
two nodes racing for the same slot meet on its primary key, where the loser sees a
live lease and takes nothing (the login is refused, never the limit exceeded).  Each
process renews all its slots in one statement every third of ``SESSION_LEASE``, so a
crashed node's sessions stop counting within that lease.

Both raise ``StoreError`` when the database cannot be reached; ``server/cluster.py``
turns that into fail closed or fail open (``[auth] shared_state_unavailable``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Connect = Callable[[], AbstractAsyncContextManager[PoolConnectionProxy[asyncpg.Record]]]

__all__ = [
    "CHANNEL",
    "PURGE_BATCH",
    "SESSION_LEASE",
    "LockoutCopy",
    "PostgresScores",
    "PostgresSessions",
    "ScoreRules",
]

# What a change of the scores is notified on (written out in the statements below).
CHANNEL = "popbox_login_failures"
PURGE_BATCH = 100  # faded rows one failure removes at most
FADED = 20  # half-lives after which a score is below one millionth: forgotten
SESSION_LEASE = 120.0  # seconds a session slot outlives a process that stopped renewing

_CHECK = (
    "SELECT coalesce(max(locked_until), 0), coalesce(bool_or(key = $2), false)"
    " FROM login_failures WHERE key = ANY($1::text[])"
)
# $1 keys, $2 now, $3 user threshold, $4 IP threshold, $5 lockout duration, $6 half-life,
# $7 purge cutoff (at most PURGE_BATCH rows).  A key's threshold is the user's or the
# IP's by its prefix.  Rounded as LoginGuard rounds: two failures a second apart are two.
_FAILED = (
    "WITH old AS (SELECT coalesce(max(locked_until), 0) AS locked FROM login_failures"
    "  WHERE key = ANY($1::text[])),"
    " purged AS (DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures"
    "  WHERE at < $7::float8 AND locked_until < $2 AND key <> ALL($1::text[]) LIMIT 100)),"
    " scored AS (INSERT INTO login_failures AS f (key, score, at, locked_until)"
    "  SELECT k, 1, $2, CASE WHEN t > 0 AND 1.5 >= t THEN $2::float8 + $5::float8 ELSE 0 END"
    "  FROM unnest($1::text[]) AS k,"
    "  LATERAL (SELECT CASE WHEN left(k, 2) = 'u:' THEN $3::int ELSE $4::int END AS t)"
    "  AS threshold"
    "  ON CONFLICT (key) DO UPDATE SET"
    "  score = f.score * power(0.5, greatest(0, $2 - f.at) / $6::float8) + 1, at = $2,"
    "  locked_until = CASE"
    "   WHEN (CASE WHEN left(f.key, 2) = 'u:' THEN $3::int ELSE $4::int END) > 0"
    "   AND f.score * power(0.5, greatest(0, $2 - f.at) / $6::float8) + 1.5"
    "   >= (CASE WHEN left(f.key, 2) = 'u:' THEN $3::int ELSE $4::int END)"
    "   THEN $2::float8 + $5::float8 ELSE f.locked_until END"
    "  RETURNING key, score, locked_until)"
    " SELECT (SELECT locked FROM old), (SELECT max(score) FROM scored),"
    "  pg_notify('popbox_login_failures', (SELECT json_build_object('locks',"
    "   json_object_agg(key, locked_until)) FROM scored)::text)"
)
# A notification only when a row was there: nothing to forgive, nothing to tell.
_SUCCEEDED = (
    "WITH gone AS (DELETE FROM login_failures WHERE key = $1 RETURNING key)"
    " SELECT pg_notify('popbox_login_failures',"
    "  json_build_object('forgiven', json_agg(key))::text)"
    " FROM gone HAVING count(*) > 0"
)

# $1 user, $2 owner, $3 now, $4 expiry, $5 limit.
_CLAIM = (
    "WITH live AS (SELECT slot FROM user_sessions WHERE user_name = $1 AND expires > $3),"
    " free AS (SELECT s FROM generate_series(0, $5::int - 1) AS s"
    "  WHERE s NOT IN (SELECT slot FROM live) LIMIT 1)"
    " INSERT INTO user_sessions AS u (user_name, slot, owner, expires)"
    " SELECT $1, s, $2, $4 FROM free"
    " ON CONFLICT (user_name, slot) DO UPDATE SET owner = excluded.owner,"
    " expires = excluded.expires WHERE u.expires <= $3"
    " RETURNING slot"
)
_RELEASE = "DELETE FROM user_sessions WHERE user_name = $1 AND slot = $2 AND owner = $3"
_RENEW = "UPDATE user_sessions SET expires = $2 WHERE owner = $1"


class LockoutCopy(Protocol):
    """What ``PostgresScores`` needs of ``postgres_scores_copy.ScoresCopy``."""

    live: bool

    def check(self, keys: list[str], user_key: str) -> tuple[float, bool]: ...

    def apply(self, update: dict[str, Any]) -> None: ...


class PostgresScores:
    """Brute-force scores (``auth/bruteforce.py``'s) that every node shares.

    Keys are ``"i:" + ip`` and ``"u:" + user``; times are POSIX seconds.  Each method is
    one statement and raises ``StoreError`` when the database cannot be reached.
    """

    def __init__(self, connect: Connect, copy: LockoutCopy | None = None) -> None:
        self._connect = connect
        self.copy = copy
        """This process's copy of the lockouts, when one is kept (not behind a pooler)."""

    async def check(self, keys: list[str], user_key: str) -> tuple[float, bool]:
        """(latest end of a lockout of ``keys``, whether ``user_key`` has a score).

        Answered from the process's copy while it is live, else read from the table.
        """
        if self.copy is not None and self.copy.live:
            return self.copy.check(keys, user_key)
        async with self._connect() as conn:
            row = await conn.fetchrow(_CHECK, keys, user_key)
        assert row is not None  # an aggregate always returns its row
        return float(row[0]), bool(row[1])

    async def failed(self, keys: list[str], now: float, rules: ScoreRules) -> tuple[float, float]:
        """Count one failure for ``keys``: (end of a lockout before it, highest score now)."""
        async with self._connect() as conn:
            row = await conn.fetchrow(
                _FAILED,
                keys,
                now,
                rules.user_lockout,
                rules.ip_lockout,
                rules.lockout_duration,
                rules.half_life,
                now - FADED * rules.half_life,
            )
        assert row is not None
        return float(row[0]), float(row[1])

    async def forgive(self, user_key: str) -> None:
        async with self._connect() as conn:
            await conn.execute(_SUCCEEDED, user_key)
        if self.copy is not None:  # also when nothing was there to notify about
            self.copy.apply({"forgiven": [user_key]})


@dataclass(frozen=True, slots=True)
class ScoreRules:
    """``[auth]``'s thresholds (0: never lock), lockout length and half-life, in seconds."""

    user_lockout: int
    ip_lockout: int
    lockout_duration: float
    half_life: float


class PostgresSessions:
    """Session slots of one process in the shared ``user_sessions`` table."""

    def __init__(self, connect: Connect, clock: Callable[[], float]) -> None:
        self._connect = connect
        self._clock = clock
        self.owner = secrets.token_hex(8)  # this process, in the rows it holds

    async def claim(self, user: str, limit: int) -> int | None:
        """A free slot of ``user``'s ``limit``, now held by this process; None: all taken.

        Raises ``StoreError`` when the table cannot be reached.
        """
        now = self._clock()
        async with self._connect() as conn:
            slot = await conn.fetchval(_CLAIM, user, self.owner, now, now + SESSION_LEASE, limit)
        return None if slot is None else int(slot)

    async def release(self, user: str, slot: int) -> None:
        async with self._connect() as conn:
            await conn.execute(_RELEASE, user, slot, self.owner)

    async def renew(self) -> None:
        """Extend the lease of every slot this process holds."""
        async with self._connect() as conn:
            await conn.execute(_RENEW, self.owner, self._clock() + SESSION_LEASE)
