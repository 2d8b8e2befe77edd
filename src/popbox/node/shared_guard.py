"""Brute-force scores shared by the workers of one node: kept by the supervisor.

Theory of operation: without a store that every node shares (SQLite), the node's
workers share one ``LoginGuard`` in the supervisor (``NodeScores``), as they share its
connection limits, and no new component is needed.  Asking the supervisor before every
login was one control-channel round trip per login, which cost a third of a login's
CPU (measured with bench/, two workers).  So each worker keeps a copy of what ``check``
needs (``WorkerGuard``), in a ``Lockouts`` (``lockouts.py``, shared with the
PostgreSQL copy): the keys locked out now and the user names with failures to forgive.
The supervisor sends the seconds each lockout has left, and the worker keeps the end on
its own monotonic clock.  ``check`` answers from that copy; only a failure
(``failed``, after a wrong password, which is answered after a delay anyway) and a
success that forgives a score (``succeeded``) go to the supervisor.  Every change the
supervisor makes is sent to every worker (``guard_update``) before the asking worker
gets its answer, and a worker starting asks for the whole state (``guard_state``)
before it serves, so the copies agree with the supervisor's scores as closely as the
channel's latency allows.  The lockout still triggers at the configured count in
total: every failure is counted by the supervisor, whichever worker saw it.  A guess
that races the update of the failure that locks its key out is not refused by the
copy; it would have raced a question to the supervisor as well, and its own failure
is counted.

A supervisor that is gone (the channel closed) or does not answer within
``ASK_TIMEOUT`` makes the guard unavailable, and ``[auth] shared_state_unavailable``
decides (``auth/guard.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from popbox.auth.bruteforce import keys_of, user_key
from popbox.auth.guard import Failed, FallbackGuard, GuardUnavailable, Standing
from popbox.lockouts import Lockouts

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.bruteforce import LoginGuard
    from popbox.auth.guard import Guard, ProcessGuard
    from popbox.config import Config
    from popbox.node.control import Channel, Message

__all__ = [
    "ASK_TIMEOUT",
    "OPS",
    "UPDATE",
    "NodeScores",
    "WorkerGuard",
    "supervisor_guard",
]

ASK_TIMEOUT = 2.0  # seconds
OPS = frozenset({"guard_failed", "guard_succeeded", "guard_state"})
UPDATE = "guard_update"  # the supervisor's notification of changed scores


class NodeScores:
    """The node's scores, in the supervisor; every change is published to the workers.

    It is also the ``Guard`` of the supervisor's own logins (the admin console's), so
    those count with the workers' and lock them out as well.
    """

    def __init__(self, guard: LoginGuard, publish: Callable[[Message], None]) -> None:
        self.guard = guard
        self._publish = publish

    def answer(self, message: Message) -> Message:
        """The answer to one of ``OPS`` from a worker."""
        op, ip, user = message.get("op"), str(message.get("ip", "")), message.get("user")
        name = None if user is None else str(user)
        if op == "guard_state":
            return {"locks": self.guard.locks(), "scored": self.guard.scored_users()}
        if op == "guard_failed":
            return self._failed(ip, name)
        if name is None:
            return {}
        return self._forgive(name)

    async def check(self, ip: str, user: str | None) -> Standing:
        return Standing(self.guard.locked_for(ip, user), self.guard.scored(user))

    async def failed(self, ip: str, user: str | None) -> Failed:
        reply = self._failed(ip, user)
        return Failed(reply["delay"], reply["locked"])

    async def succeeded(self, user: str) -> None:
        self._forgive(user)

    def _failed(self, ip: str, user: str | None) -> Message:
        locked = self.guard.locked_for(ip, user)
        delay = self.guard.failed(ip, user)
        update: Message = {"locks": self.guard.locks(keys_of(ip, user))}
        if user is not None:
            update["scored"] = [user_key(user)]
        self._publish(update)  # before the answer: the other workers know first
        return {"delay": delay, "locked": locked, **update}

    def _forgive(self, user: str) -> Message:
        self.guard.succeeded(user)
        update: Message = {"forgiven": [user_key(user)]}
        self._publish(update)
        return update


class WorkerGuard:
    """A ``Guard`` that answers ``check`` from this worker's copy of the node's scores."""

    def __init__(
        self, channel: Channel, clock: Callable[[], float], *, max_tracked: int = 100_000
    ) -> None:
        self._channel = channel
        self._clock = clock
        self._copy = Lockouts(clock, max_tracked=max_tracked)  # ends on this process's clock

    @property
    def max_tracked(self) -> int:
        """As ``[auth] max_tracked``: bounds the copy too (set once the config is known)."""
        return self._copy.max_tracked

    @max_tracked.setter
    def max_tracked(self, value: int) -> None:
        self._copy.max_tracked = value

    async def load(self) -> None:
        """Take the supervisor's whole state; raises ``GuardUnavailable`` without it."""
        self.apply(await self._ask("guard_state"))

    def apply(self, update: Message) -> None:
        """Take a change of the node's scores (``guard_update``, or an answer's)."""
        now = self._clock()
        locks: dict[str, Any] = update.get("locks") or {}
        for key, seconds in locks.items():
            if float(seconds) > 0:
                self._copy.lock(str(key), now + float(seconds))
            else:
                self._copy.lift(str(key))
        for key in update.get("scored") or ():
            self._copy.score(str(key))
        for key in update.get("forgiven") or ():
            self._copy.forgive(str(key))
        self._copy.bound()

    async def check(self, ip: str, user: str | None) -> Standing:
        if self._channel.closed.is_set():
            raise GuardUnavailable("the supervisor is gone")
        scored = user is not None and self._copy.scored(user_key(user))
        return Standing(self._copy.remaining(keys_of(ip, user)), scored)

    async def failed(self, ip: str, user: str | None) -> Failed:
        reply = await self._ask("guard_failed", ip=ip, user=user)
        self.apply(reply)
        return Failed(float(reply["delay"]), float(reply["locked"]))

    async def succeeded(self, user: str) -> None:
        self.apply(await self._ask("guard_succeeded", user=user))

    async def _ask(self, op: str, **fields: str | None) -> Message:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                return await self._channel.request(op, **fields)
        except (ConnectionError, TimeoutError) as exc:
            raise GuardUnavailable("the supervisor does not answer") from exc


def supervisor_guard(shared: WorkerGuard, local: ProcessGuard, config: Config) -> Guard:
    """The node's shared guard, with ``local`` for ``shared_state_unavailable = "open"``."""
    fail_open = config.auth.shared_state_unavailable == "open"
    return FallbackGuard(shared, local, fail_open=fail_open)
