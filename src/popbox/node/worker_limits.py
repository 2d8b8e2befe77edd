"""The node's connection and session limits, as the supervisor keeps them for its workers.

Theory of operation: one ``ConnectionLimits`` counts every worker's connections and
logins (``[server] max_connections_per_ip``, ``max_sessions_per_user``), so that a limit
holds for the node, not per process.  Each worker's share is counted apart (``Held``):
when a worker dies, what it held is released at once instead of leaking until restart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.server.limits import ConnectionLimits, LimitSettings, take_one

if TYPE_CHECKING:
    from popbox.node.control import Message

__all__ = ["Held", "WorkerLimits"]


@dataclass(eq=False)
class Held:
    """What one worker holds of the node's limits."""

    ips: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)


class WorkerLimits:
    """Answers the workers' ``admit``/``login`` questions and ``release``/``logout`` notes."""

    def __init__(self, settings: LimitSettings) -> None:
        self._limits = ConnectionLimits(settings)

    @property
    def settings(self) -> LimitSettings:
        return self._limits.settings

    @settings.setter
    def settings(self, settings: LimitSettings) -> None:
        self._limits.settings = settings  # SIGHUP: new limits apply to what comes next

    def answer(self, held: Held, message: Message) -> Message | None:
        """A worker asks to admit, or tells what ended; a reply for questions only."""
        op = message.get("op")
        if op == "admit":
            refused = self._limits.admit(message["ip"])
            if refused is None:
                held.ips[message["ip"]] += 1
            return {"refused": None if refused is None else [refused.limit, refused.text]}
        if op == "login":
            refused = self._limits.login(message["user"])
            if refused is None:
                held.users[message["user"]] += 1
            return {"refused": None if refused is None else [refused.limit, refused.text]}
        if op == "release" and take_one(held.ips, message["ip"]):
            self._limits.release(message["ip"])
        if op == "logout" and take_one(held.users, message["user"]):
            self._limits.logout(message["user"])
        return None

    def forget(self, held: Held) -> None:
        """A worker is gone: so are its connections and sessions."""
        for ip, count in held.ips.items():
            for _ in range(count):
                self._limits.release(ip)
        for user, count in held.users.items():
            for _ in range(count):
                self._limits.logout(user)
        held.ips.clear()
        held.users.clear()
