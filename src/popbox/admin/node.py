"""What the admin API needs of the running node, and its single-process implementation.

``Node`` is the admin layer's only way to the sessions and the running configuration:
``LocalNode`` serves a single-process server (``popbox serve`` with ``workers = 1``,
``popbox demo``) from its own ``ServerContext``; in a supervised node the supervisor's
``SupervisorNode`` (``node/admin_bridge.py``) asks every worker over the control channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from popbox.admin.watch import Watchers
from popbox.observability.metrics import check_store
from popbox.server import lifecycle, roster

if TYPE_CHECKING:
    import contextlib
    from pathlib import Path

    from popbox.admin.watch import Subscription
    from popbox.config import Config
    from popbox.observability.metrics import Export
    from popbox.server.context import ServerContext

__all__ = ["LocalNode", "Node"]


class Node(Protocol):
    @property
    def config(self) -> Config:
        """The configuration in force (a reload changes it)."""

    @property
    def config_path(self) -> Path | None:
        """The file a reload re-reads, if the server was started from one."""

    async def sessions(self) -> list[dict[str, object]]:
        """Every live POP3 session of the node (each with the worker that holds it)."""

    async def kick(self, *, session: str | None = None, user: str | None = None) -> int:
        """Close one session, or all of a user's; how many were closed."""

    async def reload(self) -> bool:
        """The SIGHUP path; False when the configuration file did not validate."""

    async def metrics(self) -> list[Export]:
        """Every process's metric families, for adding up."""

    async def health(self) -> tuple[bool, str]:
        """/healthz: whether the node serves, and why not."""

    def watch(self, user: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """The protocol lines of ``user``'s sessions, from now until the block ends."""


class LocalNode:
    """The node is this process: sessions and configuration are in ``context``."""

    def __init__(self, context: ServerContext, config_path: Path | None) -> None:
        self._context = context
        self._path = config_path
        self._watchers = Watchers(self._watched)

    @property
    def config(self) -> Config:
        return self._context.config

    @property
    def config_path(self) -> Path | None:
        return self._path

    async def sessions(self) -> list[dict[str, object]]:
        return [{**s, "worker": 0} for s in roster.describe_sessions(self._context)]

    async def kick(self, *, session: str | None = None, user: str | None = None) -> int:
        return roster.kick(self._context, session=session, user=user)

    async def reload(self) -> bool:
        return lifecycle.reload(self._context, self._path) is not None

    async def metrics(self) -> list[Export]:
        return [self._context.metrics.export()]

    async def health(self) -> tuple[bool, str]:
        return await check_store(self._context.store)

    def watch(self, user: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        return self._watchers.subscribe(user)

    def _watched(self, users: frozenset[str]) -> None:
        roster.set_watched(self._context, users, self._deliver)

    def _deliver(self, line: dict[str, Any]) -> None:
        self._watchers.deliver(line)
