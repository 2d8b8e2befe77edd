"""The PostgreSQL lockout copy's first read of the table, against a scripted connection:
a change notified while the read is under way is not lost when the copy is loaded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from popbox.store.postgres_scores_copy import ScoresCopy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

KEY = "i:192.0.2.7"


class ScriptedConnection:
    """Stands for asyncpg's connection: its ``fetch`` delivers a notification, of a
    change committed after the read's snapshot, before it returns ``rows``."""

    def __init__(self, during_read: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self._during_read = during_read
        self._rows = rows
        self._listeners: dict[str, Any] = {}

    def add_termination_listener(self, _callback: Any) -> None:
        pass

    async def add_listener(self, channel: str, callback: Any) -> None:
        self._listeners[channel] = callback

    async def fetch(self, _query: str) -> list[dict[str, Any]]:
        channel = "popbox_login_failures"
        self._listeners[channel](self, 1, channel, json.dumps(self._during_read))
        return self._rows

    async def fetchval(self, _query: str) -> bool:
        return False  # not in recovery

    def terminate(self) -> None:
        pass


@contextlib.asynccontextmanager
async def loaded(connection: ScriptedConnection) -> AsyncIterator[ScoresCopy]:
    async def connect() -> ScriptedConnection:
        return connection

    copy = ScoresCopy(connect, time.time, keepalive=30)  # type: ignore[arg-type]
    copy.start()
    try:
        for _ in range(200):  # at most 1 s
            if copy.live:
                break
            await asyncio.sleep(0.005)
        assert copy.live
        yield copy
    finally:
        await copy.close()


async def test_a_lockout_notified_during_the_first_read_survives_the_load():
    until = time.time() + 60
    async with loaded(ScriptedConnection({"locks": {KEY: until}}, rows=[])) as copy:
        assert copy.check([KEY], "u:ann") == (until, False)


async def test_a_forgiveness_notified_during_the_read_lifts_what_the_read_held():
    row = {"key": "u:ann", "locked_until": time.time() + 60}
    async with loaded(ScriptedConnection({"forgiven": ["u:ann"]}, rows=[row])) as copy:
        assert copy.check(["u:ann"], "u:ann") == (0.0, False)
