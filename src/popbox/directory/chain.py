"""The ordered chain of directories every password login and recipient lookup asks.

Theory of operation (Dovecot's passdb chain is the model): the login name is normalised
once (``names.py``), then the directories that serve its domain are asked in the
configured order.  UNKNOWN goes on to the next; any other answer ends the chain:

* OK: logged in, with the directory's ``Account`` (the mailbox to open);
* WRONG: the login fails like any other failure;
* DISABLED: the right password for a disabled account; the caller tells the reason;
* TEMPFAIL: the directory cannot answer, so nobody can say whether a later directory's
  answer would be the right one (a user shadowed by a later directory must not log in
  there with another password): [SYS/TEMP], never "wrong password".

Nobody answering is UNKNOWN, which the caller reports like WRONG.

Timing (V0009): each directory makes an unknown user cost what a wrong password costs
there.  Across the chain, a WRONG from an early directory would still answer sooner than
an unknown user who is asked of every directory; so a WRONG waits as long as the
directories after it took, lately, to say UNKNOWN (the median of their recent answers).

Outages: a directory whose ``healthy()`` turns False is logged once when it does and
once when it recovers, not per login; ``health()`` feeds ``/healthz`` and the metrics.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from popbox.directory.base import Status, Verdict

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import structlog

    from popbox.clock import Clock
    from popbox.directory.base import Directory, LoginName
    from popbox.directory.names import LoginNames

__all__ = ["Answer", "DirectoryChain", "Link"]

# Recent UNKNOWN answers per directory whose median pads a WRONG of an earlier one.
TIMING_SAMPLES: Final = 15


@dataclass(frozen=True, slots=True)
class Link:
    """One directory of the chain and the domains it serves (empty: every domain)."""

    directory: Directory
    domains: frozenset[str] = frozenset()
    internal: bool = False  # the mail store's own users (SCRAM, NTLM secrets live there)

    def serves(self, login: LoginName) -> bool:
        return not self.domains or login.domain in self.domains


@dataclass(frozen=True, slots=True)
class Answer:
    """The chain's verdict on one login, the name it judged, and who answered."""

    login: LoginName
    verdict: Verdict
    directory: str = ""  # the directory that ended the chain; "" when none knew the user
    stored: bool = False  # that directory is the mail store's users (the mailbox exists)

    @property
    def mailbox(self) -> str:
        """The mailbox to open or deliver to (only meaningful for OK and DISABLED)."""
        account = self.verdict.account
        return account.mailbox if account is not None else self.login.user


class DirectoryChain:
    """The configured directories, in order; built once per server."""

    def __init__(
        self,
        links: Sequence[Link],
        names: LoginNames,
        log: structlog.typing.FilteringBoundLogger,
        clock: Clock,
        *,
        observe: Callable[[str, Status, bool], None] | None = None,
    ) -> None:
        self.links: Final = tuple(links)
        self._names = names
        self._log = log
        self._clock = clock
        self._observe = observe
        self._down: set[str] = set()
        self._unknown_times: dict[str, collections.deque[float]] = {
            link.directory.name: collections.deque(maxlen=TIMING_SAMPLES) for link in self.links
        }

    def parse(self, raw: str) -> LoginName:
        """``raw`` by the ``[names]`` rules."""
        return self._names.parse(raw)

    async def authenticate(
        self, raw: str, password: str, peer: str, *, known: bool = True
    ) -> Answer:
        """Check ``password`` for the login ``raw`` from ``peer`` (the client's IP address).

        ``known=False``: the name is checked as usual (so it costs the same) but the
        answer is UNKNOWN whatever the directories say.
        """
        login = self.parse(raw)
        links = [link for link in self.links if link.serves(login)]
        for index, link in enumerate(links):
            directory = link.directory
            started = self._clock.monotonic()
            verdict = await self._ask(directory, directory.authenticate(login, password, peer))
            if verdict.status is Status.UNKNOWN:
                self._unknown_times[directory.name].append(self._clock.monotonic() - started)
                continue
            if verdict.status is Status.WRONG:
                await self._pad(links[index + 1 :])
            if not known:
                break
            return Answer(login, verdict, directory.name, stored=link.internal)
        return Answer(login, Verdict(Status.UNKNOWN, detail="no directory knows the user"))

    async def lookup(self, raw: str) -> Answer:
        """Does the recipient ``raw`` exist (no password: LMTP RCPT, ``popbox deliver``)?"""
        login = self.parse(raw)
        for link in self.links:
            if not link.serves(login):
                continue
            directory = link.directory
            verdict = await self._ask(directory, directory.lookup(login))
            if verdict.status is not Status.UNKNOWN:
                return Answer(login, verdict, directory.name, stored=link.internal)
        return Answer(login, Verdict(Status.UNKNOWN, detail="no directory knows the user"))

    def health(self) -> dict[str, bool]:
        """Directory name → answering now (False during an outage)."""
        return {link.directory.name: link.directory.healthy() for link in self.links}

    def has_internal(self) -> bool:
        """True when the mail store's users are one of the directories."""
        return any(link.internal for link in self.links)

    def internal_only(self) -> bool:
        """True when the mail store's users are the only directory."""
        return all(link.internal for link in self.links)

    async def close(self) -> None:
        for link in self.links:
            await link.directory.close()

    async def _ask(self, directory: Directory, call: Awaitable[Verdict]) -> Verdict:
        verdict = await call
        if self._observe is not None:
            self._observe(directory.name, verdict.status, directory.healthy())
        self._note_health(directory, verdict)
        return verdict

    def _note_health(self, directory: Directory, verdict: Verdict) -> None:
        name, healthy = directory.name, directory.healthy()
        if not healthy and name not in self._down:
            self._down.add(name)
            self._log.warning("directory_unavailable", directory=name, detail=verdict.detail)
        elif healthy and name in self._down:
            self._down.discard(name)
            self._log.warning("directory_recovered", directory=name)

    async def _pad(self, later: Sequence[Link]) -> None:
        """Wait as long as the later directories would have taken to say UNKNOWN."""
        delay = sum(
            statistics.median(times)
            for link in later
            if (times := self._unknown_times[link.directory.name])
        )
        if delay > 0:
            await self._clock.sleep(delay)
