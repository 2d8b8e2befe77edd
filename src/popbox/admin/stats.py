"""The dashboard's numbers: node-wide counters now and one sample a minute for an hour.

Counters come from every process's Prometheus families (``Node.metrics``) and are added
up here; a sampler task keeps the last hour in a ring, so the dashboard's chart and the
``history`` of ``/api/v1/stats`` need no database of their own.  The store's size (the
octets of every message) is read with each sample: a sum over the users' usage.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from typing import TYPE_CHECKING, Any

from popbox.store.base import StoreError

if TYPE_CHECKING:
    from popbox.admin.node import Node
    from popbox.clock import Clock
    from popbox.observability.metrics import Export
    from popbox.store.base import MailStore

__all__ = ["HISTORY_SAMPLES", "SAMPLE_INTERVAL", "Sampler", "totals"]

SAMPLE_INTERVAL = 60.0  # seconds between samples
HISTORY_SAMPLES = 60  # an hour of them


def totals(exports: list[Export]) -> dict[str, int]:
    """The node's counters in the Prometheus families of all its processes."""
    found = collections.Counter[str]()
    for export in exports:
        for family in export:
            for name, labels, value in family["samples"]:
                if name == "popbox_connections_open":
                    found["connections_open"] += int(value)
                elif name == "popbox_connections_total":
                    found["connections"] += int(value)
                elif name == "popbox_logins_total":
                    key = "logins" if labels.get("result") == "success" else "login_failures"
                    found[key] += int(value)
                elif name == "popbox_deliveries_total" and labels.get("result") == "delivered":
                    found["deliveries"] += int(value)
    keys = ("connections_open", "connections", "logins", "login_failures", "deliveries")
    return {key: found[key] for key in keys}


class Sampler:
    def __init__(self, node: Node, store: MailStore, clock: Clock) -> None:
        self._node = node
        self._store = store
        self._clock = clock
        self._samples: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=HISTORY_SAMPLES + 1
        )
        self._task: asyncio.Task[None] | None = None
        self.store_octets = 0
        self.users = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def now(self) -> dict[str, Any]:
        """The counters now, and per minute of the last hour (differences of samples)."""
        current = totals(await self._node.metrics())
        return {
            **current,
            "store_octets": self.store_octets,
            "users": self.users,
            "history": self.history(),
        }

    def history(self) -> list[dict[str, Any]]:
        samples = list(self._samples)
        per_minute = []
        for before, after in itertools.pairwise(samples):
            entry: dict[str, Any] = {"at": after["at"]}
            entry["connections_open"] = after["connections_open"]
            for key in ("logins", "login_failures", "deliveries"):
                entry[key] = max(0, after[key] - before[key])  # a restarted worker resets
            per_minute.append(entry)
        return per_minute

    async def sample(self) -> None:
        current = totals(await self._node.metrics())
        self._samples.append({"at": self._clock.wall(), **current})
        with contextlib.suppress(StoreError):
            users = await self._store.list_users()
            self.users = len(users)
            self.store_octets = sum([await self._store.usage(u.name) for u in users])

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(StoreError, ConnectionError, TimeoutError):
                await self.sample()
            await self._clock.sleep(SAMPLE_INTERVAL)
