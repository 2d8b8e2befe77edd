"""Brute-force protection: a growing failure delay and a lockout, per source IP and per user.

Theory of operation: the guard remembers, for each source IP and each claimed user name
(whether or not it exists, so that the answers do not tell), a failure score that decays
exponentially with ``auth.failure_half_life``.  Each failed login adds one to both scores
and is answered after ``pop3.auth_failure_delay * 2 ** (score - 1)`` seconds (the larger
score of the two), capped at ``auth.failure_delay_max``: an online guesser slows down
quickly while a user who mistypes once waits a second.  A score that reaches its lockout
threshold locks that IP or name for ``auth.lockout_duration`` seconds; meanwhile every
login is refused with ``[LOGIN-DELAY]`` before any password is checked, even a correct
one, so guessing during a lockout learns nothing.  A successful login clears the user's
score (not the IP's: one known account must not launder an IP's guesses).

Memory is bounded: at most ``auth.max_tracked`` keys are kept, and the least recently
touched are forgotten first.  The guard lives in one process; ``auth/guard.py`` says
how the workers of a node and the nodes of a cluster share one.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from popbox.config import Config

__all__ = ["GuardSettings", "LoginGuard", "answer_delay", "keys_of", "user_key"]


@dataclass(frozen=True, slots=True)
class GuardSettings:
    base_delay: float = 1.0  # pop3.auth_failure_delay
    max_delay: float = 15.0
    half_life: float = 300.0
    ip_lockout: int = 10  # 0: never
    user_lockout: int = 10  # 0: never
    lockout_duration: float = 300.0
    max_tracked: int = 100_000

    @classmethod
    def from_config(cls, config: Config) -> GuardSettings:
        auth = config.auth
        return cls(
            base_delay=config.pop3.auth_failure_delay,
            max_delay=auth.failure_delay_max,
            half_life=auth.failure_half_life,
            ip_lockout=auth.ip_lockout_failures,
            user_lockout=auth.user_lockout_failures,
            lockout_duration=auth.lockout_duration,
            max_tracked=auth.max_tracked,
        )


@dataclass(slots=True)
class _Score:
    value: float
    at: float  # when ``value`` was last brought up to date
    locked_until: float = 0.0


class LoginGuard:
    """Failure scores and lockouts of one server process."""

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or GuardSettings()
        self._clock = clock
        self._scores: OrderedDict[str, _Score] = OrderedDict()

    def locked_for(self, ip: str, user: str | None) -> float:
        """Seconds until neither ``ip`` nor ``user`` is locked out; 0 when neither is."""
        now = self._clock()
        remaining = 0.0
        for key in keys_of(ip, user):
            score = self._scores.get(key)
            if score is not None:
                remaining = max(remaining, score.locked_until - now)
        return remaining

    def failed(self, ip: str, user: str | None) -> float:
        """Record one failed login; returns the seconds to wait before answering it."""
        now = self._clock()
        worst = 0.0
        for key in keys_of(ip, user):
            score = self._touch(key, now)
            score.value += 1
            threshold = self.settings.user_lockout if key[0] == "u" else self.settings.ip_lockout
            # Rounded: two failures a second apart have faded to 1.998, and are two.
            if threshold and score.value + 0.5 >= threshold:
                score.locked_until = now + self.settings.lockout_duration
            worst = max(worst, score.value)
        self._forget_oldest()
        return self.delay_for(worst)

    def scored(self, user: str | None) -> bool:
        """Whether ``user`` has failures that a successful login would forgive."""
        return user is not None and user_key(user) in self._scores

    def succeeded(self, user: str) -> None:
        """A login succeeded: the user's own failures are forgiven."""
        self._scores.pop(user_key(user), None)

    def locks(self, keys: Iterable[str] | None = None) -> dict[str, float]:
        """Seconds each key (of ``keys``, or every one) stays locked out; 0: it is not.

        Without ``keys``, only the keys locked out now.  This is what the workers of a
        node keep a copy of (``node/shared_guard.py``).
        """
        now = self._clock()
        if keys is None:
            scores = self._scores.items()
            return {k: s.locked_until - now for k, s in scores if s.locked_until > now}
        found = (self._scores.get(key) for key in keys)
        return {
            key: max(0.0, score.locked_until - now) if score else 0.0
            for key, score in zip(keys, found, strict=True)
        }

    def scored_users(self) -> list[str]:
        """The user keys that have failures a successful login would forgive."""
        return [key for key in self._scores if key.startswith("u:")]

    def delay_for(self, score: float) -> float:
        """The answer delay after a failure that brought a score to ``score`` (>= 1)."""
        return answer_delay(self.settings, score)

    def tracked(self) -> int:
        """How many IPs and names are remembered (for tests and metrics)."""
        return len(self._scores)

    def _touch(self, key: str, now: float) -> _Score:
        score = self._scores.get(key)
        if score is None:
            score = self._scores[key] = _Score(0.0, now)
        else:
            elapsed = max(0.0, now - score.at)
            score.value *= 0.5 ** (elapsed / self.settings.half_life)
            score.at = now
            self._scores.move_to_end(key)
        return score

    def _forget_oldest(self) -> None:
        while len(self._scores) > self.settings.max_tracked:
            self._scores.popitem(last=False)


def user_key(user: str) -> str:
    """A user name's key among the scores."""
    return "u:" + user


def keys_of(ip: str, user: str | None) -> tuple[str, ...]:
    """The keys a login from ``ip`` as ``user`` is scored under."""
    # "i:" and "u:" prefixes keep an IP and a user named like it apart.
    return ("i:" + ip,) if user is None else ("i:" + ip, user_key(user))


def answer_delay(settings: GuardSettings, score: float) -> float:
    """The answer delay after a failure that brought a score to ``score`` (>= 1)."""
    base, cap = settings.base_delay, settings.max_delay
    if base <= 0 or cap <= base:
        return min(base, cap) if base > 0 else 0.0
    # Compare exponents, not values: 2 ** score overflows a float for huge scores.
    exponent = max(0.0, score - 1)
    if exponent >= math.log2(cap / base):
        return cap
    return base * 2**exponent
