"""popbox.protocol.testing.ManualClock: a Clock whose time moves only when a test advances it."""

from __future__ import annotations

import asyncio

from popbox.clock import ManualClock, SystemClock


async def test_timers_fire_in_deadline_order_and_only_when_due():
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(2, lambda: fired.append("two"))
    clock.call_later(1, lambda: fired.append("one"))
    cancelled = clock.call_later(1.5, lambda: fired.append("never"))
    cancelled.cancel()
    assert clock.advance(0.5) == 0
    assert fired == []
    assert clock.advance(2) == 2
    assert fired == ["one", "two"]
    assert clock.monotonic() == 2.5
    assert clock.wall() - clock.monotonic() == ManualClock().wall()


async def test_a_timer_set_by_a_timer_within_the_window_fires_in_the_same_advance():
    clock = ManualClock()
    fired: list[float] = []
    clock.call_later(1, lambda: clock.call_later(1, lambda: fired.append(clock.monotonic())))
    clock.advance(5)
    assert fired == [2.0]


async def test_sleep_ends_when_time_is_advanced_past_it():
    clock = ManualClock()
    sleeper = asyncio.ensure_future(clock.sleep(30))
    await asyncio.sleep(0)
    clock.advance(29)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(1)
    await asyncio.wait_for(sleeper, 1)


async def test_system_clock_runs_timers_on_the_loop():
    clock = SystemClock()
    done = asyncio.get_running_loop().create_future()
    clock.call_later(0, lambda: done.set_result(clock.monotonic()))
    assert await asyncio.wait_for(done, 1) <= clock.monotonic()
    await clock.sleep(0)
