"""The node's brute-force scores: kept by the supervisor, copied into every worker.

A worker answers the check before a password from its copy (no round trip per login);
failures and forgiveness go to the supervisor, which tells every worker.  These tests
run the supervisor's ``NodeScores`` and two workers' ``WorkerGuard`` over real control
channels (socketpairs), as ``popbox serve`` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import TYPE_CHECKING

import pytest

from popbox.auth.bruteforce import GuardSettings, LoginGuard
from popbox.auth.guard import FallbackGuard, GuardUnavailable, ProcessGuard
from popbox.clock import ManualClock
from popbox.node import shared_guard
from popbox.node.control import Channel

if TYPE_CHECKING:
    from popbox.node.control import Message

LOCKOUT = 3
SETTINGS = GuardSettings(base_delay=0.5, ip_lockout=LOCKOUT, user_lockout=0, lockout_duration=60)


class Node:
    """A supervisor's scores and the channels to its workers' copies."""

    def __init__(self, clock: ManualClock, settings: GuardSettings = SETTINGS) -> None:
        self.clock = clock
        self.asked: list[str] = []  # the ops the workers sent, in order
        self.scores = shared_guard.NodeScores(
            LoginGuard(settings, clock=clock.monotonic), self._publish
        )
        self.ends: list[Channel] = []  # both ends of every channel, closed at the end
        self.supervisor_ends: list[Channel] = []
        self.workers: list[shared_guard.WorkerGuard] = []

    async def add_worker(self) -> shared_guard.WorkerGuard:
        ours, theirs = socket.socketpair()

        async def supervisor_side(message: Message) -> Message | None:
            self.asked.append(str(message.get("op")))
            return self.scores.answer(message)

        async def worker_side(message: Message) -> Message | None:
            assert message.get("op") == shared_guard.UPDATE
            copy.apply(message)
            return None

        self.ends.append(await Channel.open(ours, supervisor_side))
        self.supervisor_ends.append(self.ends[-1])
        channel = await Channel.open(theirs, worker_side)
        self.ends.append(channel)
        copy = shared_guard.WorkerGuard(channel, self.clock.monotonic)
        await copy.load()
        self.workers.append(copy)
        return copy

    def _publish(self, update: Message) -> None:
        for end in self.supervisor_ends:
            end.notify(shared_guard.UPDATE, **update)

    async def close(self) -> None:
        for end in self.ends:
            await end.close()
        self.ends.clear()


async def settle() -> None:
    """Let the notifications already sent be read and applied."""
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


@pytest.fixture
async def node():
    made = Node(ManualClock())
    yield made
    await made.close()


async def test_a_check_is_answered_by_the_workers_copy_without_asking(node: Node) -> None:
    first, second = await node.add_worker(), await node.add_worker()
    node.asked.clear()
    for copy in (first, second):
        standing = await copy.check("192.0.2.1", "alice")
        assert standing.locked_for == 0
        assert not standing.user_scored
    assert node.asked == []


async def test_failures_spread_over_two_workers_lock_out_at_the_count_in_total(node: Node) -> None:
    first, second = await node.add_worker(), await node.add_worker()
    ip = "192.0.2.7"
    for n in range(LOCKOUT - 1):
        failed = await (first if n % 2 == 0 else second).failed(ip, "alice")
        assert failed.locked_for == 0
    await settle()
    assert (await first.check(ip, None)).locked_for == 0
    # The count-th failure, on the second worker, locks the IP out on the first as well.
    await second.failed(ip, "bob")
    await settle()
    for copy in (first, second):
        assert (await copy.check(ip, "carol")).locked_for == pytest.approx(60)
    # The lockout ends on the workers' clocks when it ends on the supervisor's.
    node.clock.advance(61)
    for copy in (first, second):
        assert (await copy.check(ip, "carol")).locked_for == 0


async def test_a_worker_that_starts_later_loads_the_lockouts_and_scores(node: Node) -> None:
    first = await node.add_worker()
    ip = "198.51.100.9"
    for _ in range(LOCKOUT):
        await first.failed(ip, "alice")
    node.clock.advance(10)
    late = await node.add_worker()
    standing = await late.check(ip, "alice")
    assert standing.locked_for == pytest.approx(50)
    assert standing.user_scored


async def test_a_success_forgives_the_user_on_every_worker(node: Node) -> None:
    first, second = await node.add_worker(), await node.add_worker()
    await first.failed("192.0.2.1", "alice")
    await settle()
    assert (await second.check("192.0.2.2", "alice")).user_scored
    await second.succeeded("alice")
    await settle()
    assert not (await first.check("192.0.2.1", "alice")).user_scored
    assert not node.scores.guard.scored("alice")


async def test_a_success_lifts_the_users_lockout_on_every_worker() -> None:
    """The supervisor forgets a user's score, lockout included, when the user logs in
    (a success that raced the failure that locked it); the copies lift it too, or they
    would refuse the right password until the lockout ran out."""
    node = Node(ManualClock(), dataclasses.replace(SETTINGS, ip_lockout=0, user_lockout=2))
    try:
        first, second = await node.add_worker(), await node.add_worker()
        await first.failed("192.0.2.1", "alice")
        await first.failed("192.0.2.2", "alice")
        await settle()
        assert (await second.check("192.0.2.3", "alice")).locked_for > 0
        await second.succeeded("alice")
        await settle()
        for copy in (first, second):
            assert (await copy.check("192.0.2.3", "alice")).locked_for == 0
    finally:
        await node.close()


async def test_the_consoles_failures_count_for_the_workers_too(node: Node) -> None:
    copy = await node.add_worker()
    for _ in range(LOCKOUT):
        await node.scores.failed("203.0.113.5", "admin")
    await settle()
    assert (await copy.check("203.0.113.5", None)).locked_for > 0


async def test_the_copy_is_bounded_by_max_tracked(node: Node) -> None:
    copy = await node.add_worker()
    copy.max_tracked = 5
    for n in range(20):
        copy.apply({"scored": [f"u:user{n}"]})
    assert [(await copy.check("192.0.2.1", f"user{n}")).user_scored for n in (0, 14, 15, 19)] == [
        False,
        False,
        True,
        True,
    ]


async def test_a_gone_supervisor_makes_the_guard_unavailable_or_local(node: Node) -> None:
    copy = await node.add_worker()
    for end in node.supervisor_ends:
        await end.close()
    await settle()
    with pytest.raises(GuardUnavailable):
        await copy.check("192.0.2.1", "alice")
    with pytest.raises(GuardUnavailable):
        await copy.failed("192.0.2.1", "alice")
    local = ProcessGuard(LoginGuard(SETTINGS, clock=node.clock.monotonic))
    opened = FallbackGuard(copy, local, fail_open=True)
    assert (await opened.check("192.0.2.1", "alice")).locked_for == 0
    closed = FallbackGuard(copy, local, fail_open=False)
    with pytest.raises(GuardUnavailable):
        await closed.check("192.0.2.1", "alice")
