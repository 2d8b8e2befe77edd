"""Where brute-force scores live: in this process, or shared by every worker and node.

Theory of operation: ``LoginGuard`` (``bruteforce.py``) keeps the scores of one process.
Sessions ask a ``Guard`` instead, which is asynchronous because the scores may be
elsewhere: the supervisor of a node with several workers (``node/worker.py``), or the
PostgreSQL database that several nodes share (``store/postgres_cluster.py``), so that
an attacker spreading guesses over workers and nodes meets the lockout at the
configured count in total.  Each login costs one question: ``check`` before the
password is looked at (which also says whether the user has a score, so that a
success clears it only when there is one), or ``failed`` after a wrong one.

When the shared scores cannot be reached, ``FallbackGuard`` does what
``[auth] shared_state_unavailable`` says: ``"closed"`` refuses the login with
``-ERR [SYS/TEMP]`` (``GuardUnavailable``), ``"open"`` falls back to this process's own
``LoginGuard``, which still slows down guessing, per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from popbox.auth.bruteforce import LoginGuard

__all__ = ["Failed", "FallbackGuard", "Guard", "GuardUnavailable", "ProcessGuard", "Standing"]


class GuardUnavailable(Exception):
    """The shared brute-force scores cannot be reached, and the setting says fail closed."""


@dataclass(frozen=True, slots=True)
class Standing:
    """What ``check`` learnt before a login."""

    locked_for: float  # seconds until neither the IP nor the user is locked out; 0: not
    user_scored: bool = False  # the user name has failures that a success forgives


@dataclass(frozen=True, slots=True)
class Failed:
    """What ``failed`` did: the answer's delay, and whether a lockout was already on."""

    delay: float
    locked_for: float  # as ``Standing.locked_for``, before this failure counted


class Guard(Protocol):
    """Failure scores and lockouts, wherever they are kept."""

    async def check(self, ip: str, user: str | None) -> Standing: ...

    async def failed(self, ip: str, user: str | None) -> Failed: ...

    async def succeeded(self, user: str) -> None: ...


class ProcessGuard:
    """A ``Guard`` over this process's ``LoginGuard``."""

    def __init__(self, local: LoginGuard) -> None:
        self.local = local

    async def check(self, ip: str, user: str | None) -> Standing:
        return Standing(self.local.locked_for(ip, user), self.local.scored(user))

    async def failed(self, ip: str, user: str | None) -> Failed:
        locked = self.local.locked_for(ip, user)
        return Failed(self.local.failed(ip, user), locked)

    async def succeeded(self, user: str) -> None:
        self.local.succeeded(user)


class FallbackGuard:
    """A shared ``Guard`` that fails closed or open when its state is unreachable.

    ``shared`` raises ``GuardUnavailable`` when it cannot answer; ``fail_open`` decides
    whether this process's own ``local`` answers instead.
    """

    def __init__(self, shared: Guard, local: ProcessGuard, *, fail_open: bool) -> None:
        self._shared = shared
        self._local = local
        self._fail_open = fail_open

    async def check(self, ip: str, user: str | None) -> Standing:
        try:
            return await self._shared.check(ip, user)
        except GuardUnavailable:
            if not self._fail_open:
                raise
            return await self._local.check(ip, user)

    async def failed(self, ip: str, user: str | None) -> Failed:
        try:
            return await self._shared.failed(ip, user)
        except GuardUnavailable:
            if not self._fail_open:
                raise
            return await self._local.failed(ip, user)

    async def succeeded(self, user: str) -> None:
        try:
            await self._shared.succeeded(user)
        except GuardUnavailable:
            # The failures stay counted where they are: a lockout is never lifted by a
            # success that could not be recorded.
            await self._local.succeeded(user)
