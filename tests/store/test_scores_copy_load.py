"""The PostgreSQL lockout copy's first read of the table, against a scripted connection:
a change notified while the read is under way is not lost when the copy is loaded."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from popbox.store.postgres_scores_copy import ScoresCopy

KEY = "i:192.0.2.7"


class ScriptedConnection:
    """Stands for asyncpg's connection: its ``fetch`` delivers a notification before it
    returns rows that do not hold the notified change (committed after the snapshot)."""

    def __init__(self, during_read: dict[str, Any]) -> None:
        self._during_read = during_read
        self._listener: Any = None
        self.terminated = asyncio.Event()

    def add_termination_listener(self, _callback: Any) -> None:
        pass

    async def add_listener(self, _channel: str, callback: Any) -> None:
        self._listener = callback

    async def fetch(self, _query: str) -> list[dict[str, Any]]:
        self._listener(self, 1, "popbox_login_failures", json.dumps(self._during_read))
        return []

    async def fetchval(self, _query: str) -> bool:
        return False

    def terminate(self) -> None:
        self.terminated.set()


async def test_a_lockout_notified_during_the_first_read_survives_the_load():
    until = time.time() + 60
    connection = ScriptedConnection({"locks": {KEY: until}})

    async def connect() -> ScriptedConnection:
        return connection

    copy = ScoresCopy(connect, time.time, keepalive=30)  # type: ignore[arg-type]
    copy.start()
    try:
        for _ in range(200):
            if copy.live:
                break
            await asyncio.sleep(0.005)
        assert copy.live
        assert copy.check([KEY], "u:ann") == (until, False)
    finally:
        await copy.close()


async def test_a_forgiveness_notified_during_the_read_lifts_what_the_read_held():
    connection = ScriptedConnection({"forgiven": ["u:ann"]})
    until = time.time() + 60

    async def fetch_with_row(_query: str) -> list[dict[str, Any]]:
        connection._listener(connection, 1, "c", json.dumps({"forgiven": ["u:ann"]}))
        return [{"key": "u:ann", "locked_until": until}]

    connection.fetch = fetch_with_row  # type: ignore[method-assign]

    async def connect() -> ScriptedConnection:
        return connection

    copy = ScoresCopy(connect, time.time, keepalive=30)  # type: ignore[arg-type]
    copy.start()
    try:
        for _ in range(200):
            if copy.live:
                break
            await asyncio.sleep(0.005)
        assert copy.live
        assert copy.check(["u:ann"], "u:ann") == (0.0, False)
    finally:
        await copy.close()
