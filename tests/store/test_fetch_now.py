"""The store contract for ``fetch_now``: the read a RETR is answered with in the callback.

The same backends as ``test_contract.py`` (whose fixtures these tests reuse): memory,
SQLite, and PostgreSQL when a server is there.  ``fetch_now`` gives ``fetch``'s answer
when the store has it without waiting, else ``Pending.FETCH``: memory always answers,
SQLite answers bodies up to ``INLINE_FETCH`` octets, PostgreSQL never does.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pytest
import test_contract

from popbox.observability.metrics import Metrics, timed_store
from popbox.store.base import Pending, StoreTemporaryError, UnknownUser
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare
from popbox.store.sqlite import INLINE_FETCH

if TYPE_CHECKING:
    from popbox.store.base import MailStore, NewMessage

# The contract suite's fixtures, so these tests run over exactly the same backends.
backend = test_contract.backend
clock = test_contract.clock
store = test_contract.store

# Byte-stuffing and 8-bit octets: the wire form differs from the message text.
SMALL = b"Subject: small\r\n\r\n.leading dot\r\ncaf\xe9 \xff\r\n"


def message_with_wire_size(octets: int) -> NewMessage:
    """A message whose wire form is exactly ``octets`` long, with stuffed lines in it."""
    header = b"From: big@example.org\r\nSubject: big\r\n\r\n"
    lines = [b".%07d" % n + b"x" * 70 + b"\r\n" for n in range((octets - 100) // 81)]
    text = header + b"".join(lines)
    stuffed = len(lines)  # every line starts with a dot: one more octet each on the wire
    missing = octets - len(text) - stuffed
    assert missing >= 3
    new = prepare(text + b"y" * (missing - 2) + b"\r\n")
    assert len(new.wire) == octets
    return new


def answers_at_once(backend: str, wire_size: int) -> bool:
    """Which backends the contract lets answer without waiting (see the module doc)."""
    return backend == "memory" or (backend == "sqlite" and wire_size <= INLINE_FETCH)


async def test_fetch_now_is_a_plain_method(store: MailStore) -> None:
    """A session calls it in a protocol callback, where nothing can be awaited."""
    assert not inspect.iscoroutinefunction(store.fetch_now)
    answer = store.fetch_now("alice", 1)
    assert not inspect.isawaitable(answer)


async def test_fetch_now_gives_the_same_wire_form_as_fetch(store: MailStore, backend: str) -> None:
    """A small message: the exact stored wire form, or Pending where only fetch reads."""
    new = prepare(SMALL)
    assert new.wire != SMALL  # the stuffed dot
    info = await store.deliver("alice", new)
    now = store.fetch_now("alice", info.uid)
    if answers_at_once(backend, len(new.wire)):
        assert now == new.wire
        assert type(now) is bytes
    else:
        assert now is Pending.FETCH
    assert await store.fetch("alice", info.uid) == new.wire


async def test_fetch_now_of_a_deleted_uid_is_none_c0004(store: MailStore, backend: str) -> None:
    """C0004: a message removed behind the session's back is None, not stale bytes."""
    kept, gone = [await store.deliver("alice", prepare(SMALL)) for _ in range(2)]
    assert await store.delete("alice", [gone.uid]) == 1
    expected = None if answers_at_once(backend, 0) else Pending.FETCH
    assert store.fetch_now("alice", gone.uid) is expected
    assert store.fetch_now("alice", gone.uid + 1000) is expected  # never delivered
    assert await store.fetch("alice", gone.uid) is None
    assert store.fetch_now("alice", kept.uid) in {prepare(SMALL).wire, Pending.FETCH}


async def test_fetch_now_of_an_unknown_user_is_none(store: MailStore, backend: str) -> None:
    """Like fetch (test_contract: 'quiet' for an unknown user): None, no UnknownUser."""
    await store.deliver("alice", prepare(SMALL))
    [info] = await store.snapshot("alice")
    expected = None if answers_at_once(backend, 0) else Pending.FETCH
    assert store.fetch_now("nobody", info.uid) is expected
    assert await store.fetch("nobody", info.uid) is None


@pytest.mark.parametrize("octets", [INLINE_FETCH, INLINE_FETCH + 1, 3 * INLINE_FETCH])
async def test_fetch_now_answers_a_large_body_only_where_reading_it_costs_no_wait(
    store: MailStore, backend: str, octets: int
) -> None:
    """SQLite reads bodies up to INLINE_FETCH inline; above it, only fetch reads them.

    Whatever fetch_now says, fetch still returns the whole message, byte for byte.
    """
    new = message_with_wire_size(octets)
    info = await store.deliver("alice", new)
    now = store.fetch_now("alice", info.uid)
    if answers_at_once(backend, octets):
        assert now == new.wire
    else:
        assert now is Pending.FETCH
    assert await store.fetch("alice", info.uid) == new.wire


async def test_postgres_always_says_pending_and_memory_never_does(
    store: MailStore, backend: str
) -> None:
    """Whether a backend defers does not depend on the user or message existing."""
    answer = store.fetch_now("nobody", 12345)
    if backend == "postgres":
        assert answer is Pending.FETCH
    else:
        assert answer is None


# -- the timed store ----------------------------------------------------------


def _count(metrics: Metrics, sample: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


FETCH_COUNT = 'popbox_store_operation_seconds_count{operation="fetch"}'
FETCH_ERRORS = 'popbox_store_errors_total{operation="fetch"}'


async def test_timed_store_times_fetch_now_as_fetch_once_per_answer():
    """An answer from fetch_now is one fetch; a Pending one is counted by the fetch after."""
    metrics = Metrics()

    class Deferring(MemoryStore):
        """Reads as a remote store does: only the coroutine answers."""

        def fetch_now(self, name: str, uid: int) -> Pending:  # noqa: ARG002 - the contract's
            return Pending.FETCH

        async def fetch(self, name: str, uid: int) -> bytes | None:
            return MemoryStore.fetch_now(self, name, uid)

    timed = timed_store(MemoryStore(), metrics)
    await timed.open()
    await timed.add_user("alice", {})
    info = await timed.deliver("alice", prepare(SMALL))
    assert timed.fetch_now("alice", info.uid) == prepare(SMALL).wire
    assert timed.fetch_now("alice", info.uid + 1) is None
    assert _count(metrics, FETCH_COUNT) == 2

    deferring_metrics = Metrics()
    deferring = timed_store(Deferring(), deferring_metrics)
    await deferring.open()
    await deferring.add_user("alice", {})
    info = await deferring.deliver("alice", prepare(SMALL))
    assert deferring.fetch_now("alice", info.uid) is Pending.FETCH
    assert _count(deferring_metrics, FETCH_COUNT) == 0
    assert await deferring.fetch("alice", info.uid) == prepare(SMALL).wire
    assert _count(deferring_metrics, FETCH_COUNT) == 1


async def test_timed_store_counts_fetch_now_failures_but_not_answers():
    """A failing store is a fetch error; UnknownUser is an answer, not a failure."""
    metrics = Metrics()
    raised: list[Exception] = [StoreTemporaryError("database went away"), UnknownUser("x")]

    class Flaky(MemoryStore):
        def fetch_now(self, name: str, uid: int) -> bytes | None:
            if raised:
                raise raised.pop(0)
            return super().fetch_now(name, uid)

    timed = timed_store(Flaky(), metrics)
    await timed.open()
    with pytest.raises(StoreTemporaryError):
        timed.fetch_now("alice", 1)
    with pytest.raises(UnknownUser):
        timed.fetch_now("alice", 1)
    assert _count(metrics, FETCH_ERRORS) == 1
    assert _count(metrics, FETCH_COUNT) == 0
    assert timed.fetch_now("alice", 1) is None
    assert _count(metrics, FETCH_COUNT) == 1
