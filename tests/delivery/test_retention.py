"""Retention (E0005): the policy settings, the sweep, and what CAPA's EXPIRE announces."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from popbox.clock import ManualClock
from popbox.config import ConfigError, RetentionConfig, from_mapping
from popbox.delivery.retention import DAY, expire_all, run_retention
from popbox.server.listener import expire_capability
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare

NOW = 1_800_000_000.0
MESSAGE = b"Subject: old\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("retrieved", "unretrieved", "announced"),
    [(None, None, "NEVER"), (7, 60, "7"), (None, 60, "60"), (30, None, "30"), (0, 60, "0")],
)
def test_expire_capability_is_the_smallest_period_rfc2449_s6_7(
    retrieved: int | None, unretrieved: int | None, announced: str
) -> None:
    """RFC 2449 s6.7: "EXPIRE informs the client of the minimum number of days messages
    may remain on the server under any circumstances"; NEVER when nothing is deleted."""
    policy = RetentionConfig(retrieved_days=retrieved, unretrieved_days=unretrieved)
    assert expire_capability(policy) == announced


def test_retention_settings_are_validated_naming_the_key() -> None:
    config = from_mapping({"retention": {"retrieved_days": 7, "unretrieved_days": 60}})
    assert config.retention == RetentionConfig(7, 60, 3600.0)
    with pytest.raises(ConfigError, match=r"retention\.retrieved_days"):
        from_mapping({"retention": {"retrieved_days": -1}})
    with pytest.raises(ConfigError, match=r"retention\.interval"):
        from_mapping({"retention": {"interval": 0}})
    with pytest.raises(ConfigError, match=r"retention\.keep"):
        from_mapping({"retention": {"keep": 1}})
    with pytest.raises(ConfigError, match=r"pop3\.expire_days"):
        from_mapping({"pop3": {"expire_days": 3}})  # moved to [retention]


async def _mailbox(store: MemoryStore, name: str) -> dict[str, int]:
    """Four messages: old/new x retrieved/never retrieved."""
    await store.add_user(name, {})
    uids = {}
    for label, received in (("old", NOW - 90 * DAY), ("new", NOW - 1 * DAY)):
        uids[f"{label}-unread"] = (
            await store.deliver(name, prepare(MESSAGE, received_at=received))
        ).uid
        read = await store.deliver(name, prepare(MESSAGE, received_at=received))
        uids[f"{label}-read"] = read.uid
        # Retrieved on arrival: retrieved_days counts from the first retrieval.
        await store.mark_retrieved(name, [read.uid], received)
    return uids


async def test_sweep_removes_what_each_rule_makes_due_e0005() -> None:
    """E0005: "a site might delete unread messages from the server after 60 days and
    delete read messages after 7 days"."""
    store = MemoryStore()
    uids = await _mailbox(store, "alice")
    await _mailbox(store, "bob")
    policy = RetentionConfig(retrieved_days=7, unretrieved_days=60)
    assert await expire_all(store, policy, NOW) == {"alice": 2, "bob": 2}
    left = [info.uid for info in await store.snapshot("alice")]
    assert left == [uids["new-unread"], uids["new-read"]]
    assert await expire_all(store, policy, NOW) == {}  # nothing is due twice


async def test_unset_rule_keeps_that_kind_for_ever_e0005() -> None:
    store = MemoryStore()
    uids = await _mailbox(store, "alice")
    assert await expire_all(store, RetentionConfig(retrieved_days=7), NOW) == {"alice": 1}
    left = {info.uid for info in await store.snapshot("alice")}
    assert uids["old-unread"] in left
    assert uids["old-read"] not in left
    assert await expire_all(store, RetentionConfig(), NOW) == {}


async def test_background_sweep_repeats_every_interval_e0005() -> None:
    """E0005: the sweep runs every ``interval`` seconds of the server's clock."""
    store = MemoryStore()
    await store.add_user("alice", {})
    clock = ManualClock(wall_start=NOW)
    policy = RetentionConfig(unretrieved_days=1, interval=3600)
    task = asyncio.get_running_loop().create_task(
        run_retention(store, policy, structlog.get_logger(), clock=clock)
    )
    try:
        await store.deliver("alice", prepare(MESSAGE, received_at=NOW))
        await asyncio.sleep(0)  # the first sweep, at once: nothing is due yet
        assert clock.pending() == 1  # the sweep sleeps until the next interval
        clock.advance(DAY - 3600)  # a day old, at the last sweep before the cut-off
        await asyncio.sleep(0)
        assert len(await store.snapshot("alice")) == 1  # not due yet
        clock.advance(2 * 3600)
        for _ in range(10):  # the woken sweep runs within a few loop turns
            await asyncio.sleep(0)
        assert await store.snapshot("alice") == []
    finally:
        task.cancel()


async def test_no_policy_means_no_background_task() -> None:
    await asyncio.wait_for(
        run_retention(MemoryStore(), RetentionConfig(), structlog.get_logger()), 1
    )
