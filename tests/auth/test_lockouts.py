"""A process's copy of the lockouts and scored users (``lockouts.py``).

The same ``Lockouts`` backs a node worker's copy (ends on the monotonic clock) and a
PostgreSQL copy (ends in wall-clock POSIX seconds); time is moved on with ``ManualClock``
instead of sleeping.
"""

from __future__ import annotations

import pytest

from popbox.auth.bruteforce import keys_of, user_key
from popbox.clock import ManualClock
from popbox.lockouts import Lockouts

IP, USER = keys_of("192.0.2.7", "alice")


@pytest.mark.parametrize("domain", ["monotonic", "wall"])
def test_a_lock_is_answered_until_its_end_and_not_after(domain: str) -> None:
    clock = ManualClock()
    now = getattr(clock, domain)
    copy = Lockouts(now)
    end = now() + 60
    copy.lock(IP, end)
    assert copy.remaining([IP, USER]) == pytest.approx(60)
    clock.advance(59.5)
    assert copy.remaining([IP, USER]) == pytest.approx(0.5)
    assert copy.until([IP, USER]) == end
    clock.advance(0.5)  # at its end exactly: no longer locked out
    assert copy.remaining([IP, USER]) == 0.0
    clock.advance(100)
    assert copy.remaining([IP]) == 0.0


def test_the_answer_is_the_latest_end_of_the_keys() -> None:
    clock = ManualClock()
    copy = Lockouts(clock.monotonic)
    copy.lock(IP, 30)
    copy.lock(USER, 80)
    assert copy.until([IP, USER]) == 80
    assert copy.remaining([IP, USER]) == 80
    assert copy.remaining([IP]) == 30
    assert copy.until([]) == 0.0
    assert copy.remaining(keys_of("198.51.100.1", None)) == 0.0


def test_a_lockout_found_over_is_dropped_by_remaining_but_until_reports_it() -> None:
    clock = ManualClock()
    copy = Lockouts(clock.monotonic)
    copy.lock(IP, 10)
    clock.advance(20)
    assert copy.until([IP]) == 10  # over, still held: the caller compares with its clock
    assert copy.remaining([IP]) == 0.0
    assert copy.until([IP]) == 0.0  # dropped on the way


def test_a_later_lock_replaces_the_end_known_before() -> None:
    copy = Lockouts(ManualClock().monotonic)
    copy.lock(IP, 100)
    copy.lock(IP, 50)
    assert copy.until([IP]) == 50


def test_an_update_that_lifts_a_lock_ends_it_at_once() -> None:
    clock = ManualClock()
    copy = Lockouts(clock.monotonic)
    copy.lock(IP, 300)
    copy.lock(USER, 300)
    copy.lift(IP)
    assert copy.until([IP]) == 0.0
    assert copy.remaining([IP]) == 0.0
    assert copy.remaining([IP, USER]) == 300  # the other key's lockout stands
    copy.lift("i:203.0.113.1")  # a key never locked: nothing to do, no error


def test_forgiving_a_user_ends_its_score_and_its_lockout() -> None:
    copy = Lockouts(ManualClock().monotonic)
    copy.score(USER)
    copy.lock(USER, 300)
    assert copy.scored(USER)
    assert not copy.scored(user_key("bob"))
    copy.forgive(USER)
    assert not copy.scored(USER)
    assert copy.remaining([USER]) == 0  # the owner forgot the lockout with the score
    copy.forgive(USER)  # twice: nothing left to forgive, no error


def test_scored_users_are_bounded_at_max_tracked_oldest_dropped_first() -> None:
    copy = Lockouts(ManualClock().monotonic, max_tracked=3)
    users = [user_key(f"user{n}") for n in range(5)]
    for key in users[:3]:
        copy.score(key)
    copy.score(users[0])  # scored again: now the newest
    copy.score(users[3])
    copy.score(users[4])
    copy.bound()
    assert [copy.scored(key) for key in users] == [True, False, False, True, True]


def test_scored_users_are_kept_up_to_max_tracked() -> None:
    copy = Lockouts(ManualClock().monotonic, max_tracked=3)
    users = [user_key(f"user{n}") for n in range(3)]
    for key in users:
        copy.score(key)
    copy.bound()
    assert all(copy.scored(key) for key in users)


def test_past_max_tracked_the_lockouts_that_are_over_are_dropped() -> None:
    clock = ManualClock()
    copy = Lockouts(clock.monotonic, max_tracked=2)
    first, second, third = (f"i:192.0.2.{n}" for n in range(3))
    copy.lock(first, 10)
    copy.lock(second, 20)
    clock.advance(15)
    copy.bound()
    assert copy.until([first]) == 10  # within the bound: nothing is dropped
    copy.lock(third, 30)
    copy.bound()
    assert copy.until([first]) == 0.0
    assert copy.until([second]) == 20
    assert copy.until([third]) == 30


def test_max_tracked_can_be_set_after_the_copy_is_made() -> None:
    copy = Lockouts(ManualClock().monotonic)
    copy.max_tracked = 1
    copy.score(user_key("a"))
    copy.score(user_key("b"))
    copy.bound()
    assert not copy.scored(user_key("a"))
    assert copy.scored(user_key("b"))


def test_clear_forgets_every_lockout_and_score() -> None:
    copy = Lockouts(ManualClock().monotonic)
    copy.lock(IP, 300)
    copy.score(USER)
    copy.clear()
    assert copy.until([IP]) == 0.0
    assert not copy.scored(USER)
