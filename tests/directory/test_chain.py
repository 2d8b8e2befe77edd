"""The chain's order, per-domain selection, stop/continue rules, padding and outages."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from popbox.clock import ManualClock
from popbox.config.directory_sections import NamesConfig
from popbox.directory.base import Account, LoginName, Status, Verdict
from popbox.directory.chain import DirectoryChain, Link
from popbox.directory.names import LoginNames
from popbox.observability.log import make_logger
from popbox_servers import LogSink


@dataclass
class Scripted:
    """A directory that answers what the test says, taking ``cost`` clock seconds."""

    name: str
    answers: dict[str, Status] = field(default_factory=dict)
    clock: ManualClock | None = None
    cost: float = 0.0
    up: bool = True
    asked: list[str] = field(default_factory=list)

    async def authenticate(self, login: LoginName, password: str, peer: str) -> Verdict:
        del password, peer  # the script decides
        return await self._answer(login)

    async def lookup(self, login: LoginName) -> Verdict:
        return await self._answer(login)

    async def _answer(self, login: LoginName) -> Verdict:
        self.asked.append(login.user)
        if self.clock is not None and self.cost:
            await self.clock.sleep(self.cost)
        status = Status.TEMPFAIL if not self.up else self.answers.get(login.user, Status.UNKNOWN)
        account = Account(login.user) if status in (Status.OK, Status.DISABLED) else None
        return Verdict(status, account, detail=f"{self.name} says {status.value}")

    def healthy(self) -> bool:
        return self.up

    async def close(self) -> None:
        pass


def chain(*links: Link, log: LogSink | None = None, clock: ManualClock | None = None):
    logger = make_logger(json=True, stream=log or LogSink())
    return DirectoryChain(links, LoginNames(NamesConfig()), logger, clock or ManualClock())


async def test_unknown_goes_on_and_any_other_answer_ends_the_chain():
    """Dovecot's passdb model: found / not found / temporary failure, in order."""
    first = Scripted("first", {"ann": Status.OK, "bob": Status.WRONG, "cy": Status.TEMPFAIL})
    second = Scripted(
        "second", {"ann": Status.OK, "bob": Status.OK, "cy": Status.OK, "dee": Status.OK}
    )
    directories = chain(Link(first), Link(second))
    for user, status, answered in [
        ("ann", Status.OK, "first"),
        ("bob", Status.WRONG, "first"),  # never retried with the next directory's password
        ("cy", Status.TEMPFAIL, "first"),  # a shadowed user must not log in further down
        ("dee", Status.OK, "second"),
        ("eve", Status.UNKNOWN, ""),
    ]:
        answer = await directories.authenticate(user, "pw", "127.0.0.1")
        assert (answer.verdict.status, answer.directory) == (status, answered), user
    assert second.asked == ["dee", "eve"]


async def test_a_directory_with_domains_is_asked_only_about_those_domains():
    corp = Scripted("corp", {"ann@corp.example": Status.OK})
    other = Scripted("other", {"ann@other.example": Status.OK})
    directories = chain(Link(corp, frozenset({"corp.example"})), Link(other))
    assert (await directories.authenticate("ann@CORP.example", "pw", "::1")).directory == "corp"
    assert (await directories.authenticate("ann@other.example", "pw", "::1")).directory == "other"
    assert corp.asked == ["ann@corp.example"]
    assert (await directories.lookup("ann@other.example")).verdict.status is Status.OK
    assert corp.asked == ["ann@corp.example"]


async def test_known_false_costs_the_same_and_answers_unknown():
    """V0008: a name USER refused is checked all the same, and never logs in."""
    only = Scripted("only", {"ann": Status.OK})
    directories = chain(Link(only))
    answer = await directories.authenticate("ann", "pw", "::1", known=False)
    assert answer.verdict.status is Status.UNKNOWN
    assert only.asked == ["ann"]


async def test_a_wrong_password_early_waits_what_the_later_directories_take_to_say_unknown():
    """V0009 across the chain: a WRONG from the first directory would otherwise answer
    sooner than an unknown user, who is asked of every directory."""
    clock = ManualClock()
    first = Scripted("first", {"ann": Status.WRONG}, clock=clock, cost=0.01)
    second = Scripted("second", clock=clock, cost=0.5)
    directories = chain(Link(first), Link(second), clock=clock)

    async def timed(user: str) -> float:
        task = asyncio.ensure_future(directories.authenticate(user, "pw", "::1"))
        started = clock.monotonic()
        for _ in range(100):
            await asyncio.sleep(0)
            if task.done():
                break
            clock.advance(0.01)
        assert task.done()
        return clock.monotonic() - started

    unknown = await timed("ghost")
    wrong = await timed("ann")
    assert unknown == pytest.approx(0.51, abs=0.02)
    assert wrong == pytest.approx(unknown, abs=0.02)


async def test_an_outage_is_logged_once_and_its_end_once():
    log = LogSink()
    files = Scripted("files", {"ann": Status.OK})
    directories = chain(Link(files), log=log)
    files.up = False
    for _ in range(5):
        answer = await directories.authenticate("ann", "pw", "::1")
        assert answer.verdict.status is Status.TEMPFAIL
    assert directories.health() == {"files": False}
    files.up = True
    assert (await directories.authenticate("ann", "pw", "::1")).verdict.status is Status.OK
    assert directories.health() == {"files": True}
    assert [e["event"] for e in log.events() if e["event"].startswith("directory_")] == [
        "directory_unavailable",
        "directory_recovered",
    ]


async def test_observe_sees_each_answer_and_health():
    seen = []
    files = Scripted("files", {"ann": Status.OK})
    logger = make_logger(json=True, stream=LogSink())
    directories = DirectoryChain(
        [Link(files)],
        LoginNames(NamesConfig()),
        logger,
        ManualClock(),
        observe=lambda name, status, healthy: seen.append((name, status, healthy)),
    )
    await directories.authenticate("ann", "pw", "::1")
    await directories.lookup("bob")
    assert seen == [("files", Status.OK, True), ("files", Status.UNKNOWN, True)]
