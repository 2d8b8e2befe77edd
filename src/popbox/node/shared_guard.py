"""Brute-force scores shared by the workers of one node: kept by the supervisor.

Theory of operation: without a store that every node shares (SQLite), the node's
workers share one ``LoginGuard`` in the supervisor, as they share its connection
limits: a worker asks over its control channel (``SupervisorGuard``) and the supervisor
answers from its guard (``answer``).  That is one round trip per login (``check``, or
``failed`` after a wrong password; a success asks again only when the user had
failures to forgive), and no new component.  A supervisor that does not answer within
``ASK_TIMEOUT`` makes the guard unavailable, and ``[auth] shared_state_unavailable``
decides (``auth/guard.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from popbox.auth.guard import Failed, FallbackGuard, GuardUnavailable, Standing

if TYPE_CHECKING:
    from popbox.auth.bruteforce import LoginGuard
    from popbox.auth.guard import Guard, ProcessGuard
    from popbox.config import Config
    from popbox.node.control import Channel, Message

__all__ = ["ASK_TIMEOUT", "OPS", "SupervisorGuard", "answer", "supervisor_guard"]

ASK_TIMEOUT = 2.0  # seconds
OPS = frozenset({"guard_check", "guard_failed", "guard_succeeded"})


class SupervisorGuard:
    """A ``Guard`` whose scores the supervisor keeps for the whole node."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def check(self, ip: str, user: str | None) -> Standing:
        reply = await self._ask("guard_check", ip=ip, user=user)
        return Standing(float(reply["locked"]), bool(reply["scored"]))

    async def failed(self, ip: str, user: str | None) -> Failed:
        reply = await self._ask("guard_failed", ip=ip, user=user)
        return Failed(float(reply["delay"]), float(reply["locked"]))

    async def succeeded(self, user: str) -> None:
        await self._ask("guard_succeeded", user=user)

    async def _ask(self, op: str, **fields: str | None) -> Message:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                return await self._channel.request(op, **fields)
        except (ConnectionError, TimeoutError) as exc:
            raise GuardUnavailable("the supervisor does not answer") from exc


def supervisor_guard(channel: Channel, local: ProcessGuard, config: Config) -> Guard:
    """The node's shared guard, with ``local`` for ``shared_state_unavailable = "open"``."""
    fail_open = config.auth.shared_state_unavailable == "open"
    return FallbackGuard(SupervisorGuard(channel), local, fail_open=fail_open)


def answer(guard: LoginGuard, message: Message) -> Message:
    """The supervisor's answer to one of ``OPS`` from a worker."""
    op, ip, user = message.get("op"), str(message.get("ip", "")), message.get("user")
    name = None if user is None else str(user)
    if op == "guard_check":
        return {"locked": guard.locked_for(ip, name), "scored": guard.scored(name)}
    if op == "guard_failed":
        locked = guard.locked_for(ip, name)
        return {"delay": guard.failed(ip, name), "locked": locked}
    if name is not None:
        guard.succeeded(name)
    return {}
