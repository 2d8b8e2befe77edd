"""Login defence and session limits shared by the nodes of a cluster (PostgreSQL store).

Theory of operation: a store that can hold state for every node (``ClusterState``:
``PostgresStore``, through ``store/postgres_cluster.py``) supplies a shared brute-force
``Guard`` and shared session slots.  ``shared_guard`` puts the first behind
``FallbackGuard`` (``[auth] shared_state_unavailable``); ``ClusterLimiter`` counts
``[server] max_sessions_per_user`` across nodes in the slots, while the node's own
limiter keeps counting connections.  When the slots cannot be reached the same setting
decides: ``"closed"`` refuses the login with ``-ERR [SYS/TEMP]``, ``"open"`` admits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from popbox.auth.bruteforce import answer_delay, keys_of, user_key
from popbox.auth.guard import Failed, FallbackGuard, Guard, GuardUnavailable, ProcessGuard, Standing
from popbox.server.limits import LimitSettings, Refused
from popbox.store.base import StoreError
from popbox.store.postgres_cluster import ScoreRules

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.bruteforce import GuardSettings
    from popbox.config import Config
    from popbox.server.limits import Limiter

__all__ = [
    "ClusterLimiter",
    "ClusterState",
    "SessionSlots",
    "SharedScores",
    "StoreGuard",
    "cluster_limiter",
    "shared_guard",
]

RENEW_EVERY = 40.0  # seconds; a third of store.postgres_cluster.SESSION_LEASE


class SessionSlots(Protocol):
    async def claim(self, user: str, limit: int) -> int | None: ...

    async def release(self, user: str, slot: int) -> None: ...

    async def renew(self) -> None: ...


class SharedScores(Protocol):
    """``store/postgres_cluster.PostgresScores``: scores by key, raising ``StoreError``."""

    async def check(self, keys: list[str], user_key: str) -> tuple[float, bool]: ...

    async def failed(
        self, keys: list[str], now: float, rules: ScoreRules
    ) -> tuple[float, float]: ...

    async def forgive(self, user_key: str) -> None: ...


@runtime_checkable
class ClusterState(Protocol):
    """A store whose state every node shares."""

    def cluster_scores(self, *, max_tracked: int) -> SharedScores: ...

    def cluster_sessions(self, clock: Callable[[], float]) -> SessionSlots: ...


class StoreGuard:
    """A ``Guard`` over scores the store shares; a ``StoreError`` is ``GuardUnavailable``."""

    def __init__(
        self, scores: SharedScores, settings: GuardSettings, wall: Callable[[], float]
    ) -> None:
        self._scores = scores
        self._settings = settings
        self._rules = ScoreRules(
            settings.user_lockout,
            settings.ip_lockout,
            settings.lockout_duration,
            settings.half_life,
        )
        self._wall = wall

    async def check(self, ip: str, user: str | None) -> Standing:
        try:
            until, scored = await self._scores.check(_keys(ip, user), _user_key(user))
        except StoreError as exc:
            raise GuardUnavailable(str(exc)) from exc
        return Standing(max(0.0, until - self._wall()), scored)

    async def failed(self, ip: str, user: str | None) -> Failed:
        now = self._wall()
        try:
            until, score = await self._scores.failed(_keys(ip, user), now, self._rules)
        except StoreError as exc:
            raise GuardUnavailable(str(exc)) from exc
        return Failed(answer_delay(self._settings, score), max(0.0, until - now))

    async def succeeded(self, user: str) -> None:
        try:
            await self._scores.forgive(_user_key(user))
        except StoreError as exc:
            raise GuardUnavailable(str(exc)) from exc


def _keys(ip: str, user: str | None) -> list[str]:
    return list(keys_of(ip, user))


def _user_key(user: str | None) -> str:
    return "" if user is None else user_key(user)


def shared_guard(
    store: object, config: Config, local: ProcessGuard, wall: Callable[[], float]
) -> Guard | None:
    """The cluster's guard if ``store`` holds one, else None."""
    if not isinstance(store, ClusterState):
        return None
    settings = local.local.settings
    shared = StoreGuard(store.cluster_scores(max_tracked=settings.max_tracked), settings, wall)
    return FallbackGuard(shared, local, fail_open=config.auth.shared_state_unavailable == "open")


class ClusterLimiter:
    """A ``Limiter``: connections by the node's limiter, sessions per user by the slots."""

    def __init__(
        self, node: Limiter, slots: SessionSlots, settings: LimitSettings, *, fail_open: bool
    ) -> None:
        self._node = node
        self._slots = slots
        self._settings = settings
        self._fail_open = fail_open
        self._held: defaultdict[str, list[int]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def admit(self, ip: str) -> Refused | None:
        return await self._node.admit(ip)

    def release(self, ip: str) -> None:
        self._node.release(ip)

    async def login(self, user: str) -> Refused | None:
        limit = self._settings.max_sessions_per_user
        if not limit:
            return None
        try:
            slot = await self._slots.claim(user, limit)
        except StoreError:
            if self._fail_open:
                return None
            return Refused(
                "max_sessions_per_user", "sessions cannot be counted now, try again later"
            )
        if slot is None:
            return Refused(
                "max_sessions_per_user",
                f"too many sessions for this user (limit {limit}), try again later",
            )
        self._held[user].append(slot)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        return None

    def logout(self, user: str) -> None:
        held = self._held.get(user)
        if not held:
            return  # admitted without a slot (no limit, or failing open)
        slot = held.pop()
        if not held:
            del self._held[user]
        task = asyncio.get_running_loop().create_task(self._release(user, slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def configure(self, settings: LimitSettings) -> None:
        self._settings = settings
        self._node.configure(settings)

    async def _release(self, user: str, slot: int) -> None:
        # Not released: the slot's lease runs out instead.
        with contextlib.suppress(StoreError):
            await self._slots.release(user, slot)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            with contextlib.suppress(StoreError):
                await self._slots.renew()


def cluster_limiter(
    store: object, node: Limiter, config: Config, wall: Callable[[], float]
) -> Limiter:
    """``node`` with per-user sessions counted across the cluster, if ``store`` can."""
    if not isinstance(store, ClusterState):
        return node
    return ClusterLimiter(
        node,
        store.cluster_sessions(wall),
        LimitSettings.from_config(config.server),
        fail_open=config.auth.shared_state_unavailable == "open",
    )
