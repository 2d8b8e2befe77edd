"""The admin listener of a supervised node: the supervisor's view of every worker.

The supervisor serves ``[admin]`` (as it serves /metrics): it is the one process that
sees every worker.  ``SupervisorNode`` implements ``admin.node.Node`` by asking each
worker over its control channel (``node/control.py``): ``sessions`` and ``kick``
requests, answered from the worker's ``server/roster.py``; ``watch`` notifications that
tell every worker which users' protocol lines to send, and ``protocol`` notifications
carrying those lines back.  A worker that starts (or starts again) is told the watched
users as soon as it is ready.  The supervisor keeps a store connection of its own for
the admin API's user and mailbox operations, as the CLI would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from popbox.admin.app import AdminServer
from popbox.admin.watch import Watchers
from popbox.auth.passwords import Argon2Params, PasswordVerifier
from popbox.clock import SystemClock
from popbox.server import startup

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import structlog

    from popbox.admin.watch import Subscription
    from popbox.auth.guard import Guard
    from popbox.config import Config
    from popbox.node.control import Channel, Message
    from popbox.observability.metrics import Export
    from popbox.store.base import MailStore

__all__ = ["AdminBridge", "SupervisorNode"]


class SupervisorNode:
    def __init__(  # noqa: PLR0913 - the supervisor's parts the admin API uses
        self,
        *,
        config: Callable[[], Config],
        config_path: Path | None,
        ask_all: Callable[..., Awaitable[list[Message | None]]],
        reload: Callable[[], Awaitable[bool]],
        metrics: Callable[[], Awaitable[list[Export]]],
        health: Callable[[], Awaitable[tuple[bool, str]]],
    ) -> None:
        self._config = config
        self._path = config_path
        self._ask_all = ask_all
        self._reload = reload
        self._metrics = metrics
        self._health = health
        self._channels: Callable[[], list[Channel]] = list
        self.watchers = Watchers(self._tell_watched)

    @property
    def config(self) -> Config:
        return self._config()

    @property
    def config_path(self) -> Path | None:
        return self._path

    async def sessions(self) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        for reply in await self._ask_all("sessions"):
            if reply and "sessions" in reply:
                found += [{**s, "worker": reply["worker"]} for s in reply["sessions"]]
        return sorted(found, key=lambda s: (float(str(s["since"])), str(s["id"])))

    async def kick(self, *, session: str | None = None, user: str | None = None) -> int:
        replies = await self._ask_all("kick", session=session, user=user)
        return sum(int(reply.get("kicked", 0)) for reply in replies if reply)

    async def reload(self) -> bool:
        return await self._reload()

    async def metrics(self) -> list[Export]:
        return await self._metrics()

    async def health(self) -> tuple[bool, str]:
        return await self._health()

    def watch(self, user: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        return self.watchers.subscribe(user)

    def attach(self, channels: Callable[[], list[Channel]]) -> None:
        """Where the control channels of the ready workers are (the supervisor's slots)."""
        self._channels = channels

    def tell(self, channel: Channel) -> None:
        """A worker became ready: tell it whom to watch."""
        channel.notify("watch", users=sorted(self.watchers.users))

    def _tell_watched(self, users: frozenset[str]) -> None:
        for channel in self._channels():
            channel.notify("watch", users=sorted(users))


class AdminBridge:
    """The supervisor's admin listener, with the store connection it needs."""

    def __init__(self, node: SupervisorNode, store: MailStore, server: AdminServer) -> None:
        self.node = node
        self._store = store
        self._server = server

    @classmethod
    async def start(
        cls, node: SupervisorNode, log: structlog.typing.FilteringBoundLogger, guard: Guard
    ) -> tuple[AdminBridge, list[tuple[str, int]]]:
        """Open a store and bind ``[admin] listen``; the bridge and the bound addresses.

        ``guard``: the node's brute-force scores (the supervisor's, which its workers ask).
        """
        config = node.config
        clock = SystemClock()
        store = await startup.open_store_at_start(config, patience=0.0, clock=clock.wall)
        try:
            server = AdminServer(
                node=node,
                store=store,
                log=log,
                clock=clock,
                passwords=PasswordVerifier(Argon2Params.from_config(config.auth)),
                guard=guard,
                tls=startup.tls_holder(config),
            )
            bound = await server.start()
        except BaseException:
            await store.close()
            raise
        return cls(node, store, server), bound

    def deliver(self, message: dict[str, Any]) -> None:
        """A worker's ``protocol`` notification: one line to its subscribers."""
        line = message.get("line")
        if isinstance(line, dict):
            self.node.watchers.deliver(line)

    async def stop(self) -> None:
        await self._server.stop()
        await self._store.close()
