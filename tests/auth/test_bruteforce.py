"""The brute-force guard on its own: growing delays, decay, lockouts, bounded memory."""

from __future__ import annotations

import pytest

from popbox.auth.bruteforce import GuardSettings, LoginGuard
from popbox.config import from_mapping


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard(**kwargs) -> tuple[LoginGuard, Clock]:
    clock = Clock()
    return LoginGuard(GuardSettings(**kwargs), clock=clock), clock


def test_delay_doubles_per_failure_up_to_the_cap():
    g, _ = guard(base_delay=1.0, max_delay=5.0, ip_lockout=0, user_lockout=0)
    delays = [g.failed("10.0.0.1", "ann") for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_delay_follows_the_worse_of_ip_and_user():
    """Spreading guesses over many IPs does not reset the per-user delay, nor over many
    names the per-IP delay."""
    g, _ = guard(base_delay=1.0, max_delay=100, ip_lockout=0, user_lockout=0)
    for n in range(3):
        g.failed(f"10.0.0.{n}", "ann")
    assert g.failed("10.0.0.9", "ann") == 8.0  # fourth failure for ann
    for name in ("a", "b", "c"):
        g.failed("10.9.9.9", name)
    assert g.failed("10.9.9.9", "d") == 8.0  # fourth failure from this IP


def test_failures_decay_with_the_half_life():
    g, clock = guard(base_delay=1.0, max_delay=100, half_life=60, ip_lockout=0, user_lockout=0)
    for _ in range(4):
        g.failed("10.0.0.1", "ann")  # score 4
    clock.now += 120  # two half-lives: score 1
    assert g.failed("10.0.0.1", "ann") == pytest.approx(2.0)  # score 2


def test_zero_base_delay_means_no_delay():
    g, _ = guard(base_delay=0.0, ip_lockout=0, user_lockout=0)
    assert {g.failed("ip", "u") for _ in range(50)} == {0.0}


def test_cap_below_base_caps_the_first_delay():
    g, _ = guard(base_delay=2.0, max_delay=1.0)
    assert g.failed("ip", "u") == 1.0


def test_huge_scores_do_not_overflow():
    g, _ = guard(base_delay=1.0, max_delay=30.0)
    assert g.delay_for(1e6) == 30.0


def test_user_lockout_after_n_failures_then_expires():
    g, clock = guard(user_lockout=3, ip_lockout=0, lockout_duration=300, half_life=1e9)
    for n in range(3):
        assert g.locked_for(f"10.0.0.{n}", "ann") == 0
        g.failed(f"10.0.0.{n}", "ann")
    assert g.locked_for("10.1.1.1", "ann") == 300
    assert g.locked_for("10.1.1.1", "bob") == 0
    clock.now += 299
    assert g.locked_for("10.1.1.1", "ann") == pytest.approx(1)
    clock.now += 2
    assert g.locked_for("10.1.1.1", "ann") == 0


def test_ip_lockout_covers_every_name_and_unnamed_attempts():
    g, _ = guard(ip_lockout=2, user_lockout=0, lockout_duration=60)
    g.failed("10.0.0.1", None)
    g.failed("10.0.0.1", "ann")
    assert g.locked_for("10.0.0.1", "zed") == 60
    assert g.locked_for("10.0.0.1", None) == 60
    assert g.locked_for("10.0.0.2", "zed") == 0


def test_success_forgives_the_user_but_not_the_ip():
    g, _ = guard(base_delay=1.0, max_delay=100, ip_lockout=0, user_lockout=0)
    g.failed("10.0.0.1", "ann")
    g.failed("10.0.0.1", "ann")
    g.succeeded("ann")
    assert g.failed("10.0.0.2", "ann") == 1.0
    assert g.failed("10.0.0.1", "zed") == 4.0


def test_an_ip_and_a_user_named_alike_are_apart():
    g, _ = guard(ip_lockout=0, user_lockout=1)
    g.failed("10.0.0.1", "x")
    assert g.locked_for("10.0.0.9", "10.0.0.1") == 0


def test_memory_is_bounded_oldest_forgotten_first():
    g, _ = guard(max_tracked=10, ip_lockout=0, user_lockout=0)
    for n in range(100):
        g.failed(f"10.0.{n}.1", f"user{n}")
    assert g.tracked() == 10
    assert g.failed("10.0.99.1", "user99") == 2.0  # the newest are still remembered


def test_settings_come_from_the_configuration():
    config = from_mapping(
        {
            "pop3": {"auth_failure_delay": 0.5},
            "auth": {
                "failure_delay_max": 9,
                "failure_half_life": 10,
                "ip_lockout_failures": 4,
                "user_lockout_failures": 0,
                "lockout_duration": 7,
                "max_tracked": 5,
            },
        }
    )
    assert GuardSettings.from_config(config) == GuardSettings(0.5, 9.0, 10.0, 4, 0, 7.0, 5)


def test_lockout_counts_failures_that_have_faded_a_little():
    g, clock = guard(user_lockout=2, ip_lockout=0, half_life=300)
    g.failed("ip", "ann")
    clock.now += 5
    g.failed("ip", "ann")  # the first has faded to 0.99, still one failure
    assert g.locked_for("ip", "ann") > 0
