"""Connection and session limits of one node: in all, per client address, per user.

Theory of operation: ``ConnectionLimits`` is plain bookkeeping (no I/O, no clock): the
listener asks ``admit(ip)`` once it knows the real client address (after any PROXY
header) and calls ``release(ip)`` when the session ends; the session asks ``login(user)``
after a successful authentication and calls ``logout(user)`` when it ends.  A refusal
is a ``Refused`` value naming the limit; the caller answers it with one
``-ERR [SYS/TEMP]`` line (RFC 3206: a passing condition, try again later) and a log
entry.  Zero means "no limit".

Counting is per node.  With several worker processes the supervisor owns the one
``ConnectionLimits`` of the node and workers ask it over their control channel
(``node/supervisor.py``), so the limits hold for the node as a whole.  Limits across
several nodes would need the shared store; they are deliberately not attempted (a load
balancer's own per-source limits are the usual tool there).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from popbox.protocol.replies import Err, RespCode

if TYPE_CHECKING:
    from popbox.config import ServerConfig

__all__ = [
    "ConnectionLimits",
    "LimitSettings",
    "Limiter",
    "LocalLimiter",
    "Refused",
    "take_one",
]


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_connections: int = 0  # 0: no limit
    max_connections_per_ip: int = 0
    max_sessions_per_user: int = 0

    @classmethod
    def from_config(cls, server: ServerConfig) -> LimitSettings:
        return cls(
            server.max_connections, server.max_connections_per_ip, server.max_sessions_per_user
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """A limit was reached; ``limit`` names it for logs and metrics."""

    limit: str  # "max_connections" | "max_connections_per_ip" | "max_sessions_per_user"
    text: str  # the reason, worded for the client

    @property
    def reply(self) -> Err:
        return Err(self.text, RespCode.SYS_TEMP)


class ConnectionLimits:
    """What is open on this node right now, and whether one more is allowed."""

    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings or LimitSettings()  # replaced on reload (SIGHUP)
        self._connections = 0
        self._per_ip: Counter[str] = Counter()
        self._per_user: Counter[str] = Counter()

    @property
    def connections(self) -> int:
        return self._connections

    def connections_from(self, ip: str) -> int:
        return self._per_ip[ip]

    def sessions_of(self, user: str) -> int:
        return self._per_user[user]

    def admit(self, ip: str) -> Refused | None:
        """Count one more connection from ``ip``, or say which limit refuses it."""
        settings = self.settings
        if 0 < settings.max_connections <= self._connections:
            return Refused(
                "max_connections", "too many connections to this server, try again later"
            )
        if 0 < settings.max_connections_per_ip <= self._per_ip[ip]:
            return Refused(
                "max_connections_per_ip",
                f"too many connections from your address (limit {settings.max_connections_per_ip})"
                ", try again later",
            )
        self._connections += 1
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        """Forget one connection counted by ``admit``; unknown addresses are ignored."""
        if take_one(self._per_ip, ip):
            self._connections -= 1

    def login(self, user: str) -> Refused | None:
        """Count one more session of ``user``, or refuse it."""
        limit = self.settings.max_sessions_per_user
        if 0 < limit <= self._per_user[user]:
            return Refused(
                "max_sessions_per_user",
                f"too many sessions for this user (limit {limit}), try again later",
            )
        self._per_user[user] += 1
        return None

    def logout(self, user: str) -> None:
        """Forget one session counted by ``login``; unknown users are ignored."""
        take_one(self._per_user, user)


def take_one(counts: Counter[str], key: str) -> bool:
    """Decrement ``counts[key]`` if it is positive; tell whether it was.

    A key that reaches zero is dropped, so the table stays as small as what is open now.
    """
    if counts[key] <= 0:
        return False
    counts[key] -= 1
    if not counts[key]:
        del counts[key]
    return True


class Limiter(Protocol):
    """What sessions and listeners use: local bookkeeping, or the supervisor's."""

    async def admit(self, ip: str) -> Refused | None: ...

    def release(self, ip: str) -> None: ...

    async def login(self, user: str) -> Refused | None: ...

    def logout(self, user: str) -> None: ...

    def configure(self, settings: LimitSettings) -> None: ...


class LocalLimiter:
    """A ``Limiter`` for a single-process server: the node's limits live right here."""

    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.limits = ConnectionLimits(settings)

    async def admit(self, ip: str) -> Refused | None:
        return self.limits.admit(ip)

    def release(self, ip: str) -> None:
        self.limits.release(ip)

    async def login(self, user: str) -> Refused | None:
        return self.limits.login(user)

    def logout(self, user: str) -> None:
        self.limits.logout(user)

    def configure(self, settings: LimitSettings) -> None:
        self.limits.settings = settings
