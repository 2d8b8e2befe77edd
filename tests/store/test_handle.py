"""The store contract for ``MaildropHandle``: a session's snapshot, body reads and UPDATE.

The same backends as ``test_contract.py`` (whose fixtures these tests reuse): memory,
SQLite, and PostgreSQL when a server is there.  ``body_now`` gives ``body``'s answer
when the handle has it without waiting, else ``Pending.FETCH``: memory always answers,
SQLite answers bodies up to ``INLINE_FETCH`` octets, PostgreSQL never does.  ``commit``
is UPDATE as one transaction: removals and retrieval stamps together or not at all
(V0006, E0005).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pytest
import test_contract

from popbox.observability.metrics import Metrics
from popbox.observability.store_timing import timed_store
from popbox.store.base import Pending, StoreTemporaryError, UnknownUser
from popbox.store.memory import MemoryMaildrop, MemoryStore
from popbox.store.message import prepare
from popbox.store.sqlite_maildrop import INLINE_FETCH

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


async def test_the_handle_holds_the_login_snapshot_c0004(store: MailStore) -> None:
    """C0004: the snapshot is taken once; later deliveries do not appear in it."""
    first = await store.deliver("alice", prepare(SMALL))
    handle = await store.open_maildrop("alice")
    await store.deliver("alice", prepare(SMALL))
    assert list(handle.messages) == [first]
    assert not inspect.iscoroutinefunction(handle.body_now)  # called in a protocol callback
    with pytest.raises(UnknownUser):
        await store.open_maildrop("nobody")


async def test_body_now_gives_the_same_wire_form_as_body(store: MailStore, backend: str) -> None:
    """A small message: the exact stored wire form, or Pending where only body reads."""
    new = prepare(SMALL)
    assert new.wire != SMALL  # the stuffed dot
    info = await store.deliver("alice", new)
    handle = await store.open_maildrop("alice")
    now = handle.body_now(info.uid)
    if answers_at_once(backend, len(new.wire)):
        assert now == new.wire
        assert type(now) is bytes
    else:
        assert now is Pending.FETCH
    assert await handle.body(info.uid) == new.wire


async def test_a_body_removed_after_the_snapshot_is_none_c0004(
    store: MailStore, backend: str
) -> None:
    """C0004: a message removed behind the session's back is None, not stale bytes, even
    when the handle had read it ahead with the one before it."""
    kept, gone = [await store.deliver("alice", prepare(SMALL)) for _ in range(2)]
    handle = await store.open_maildrop("alice")
    assert handle.body_now(kept.uid) in {prepare(SMALL).wire, Pending.FETCH}  # reads ahead
    assert await store.delete("alice", [gone.uid]) == 1
    expected = None if answers_at_once(backend, 0) else Pending.FETCH
    assert handle.body_now(gone.uid) is expected
    assert handle.body_now(gone.uid + 1000) is expected  # never delivered
    assert await handle.body(gone.uid) is None


@pytest.mark.parametrize("octets", [INLINE_FETCH, INLINE_FETCH + 1, 3 * INLINE_FETCH])
async def test_body_now_answers_a_large_body_only_where_reading_it_costs_no_wait(
    store: MailStore, backend: str, octets: int
) -> None:
    """SQLite reads bodies up to INLINE_FETCH inline; above it, only body reads them.

    Whatever body_now says, body still returns the whole message, byte for byte.
    """
    new = message_with_wire_size(octets)
    info = await store.deliver("alice", new)
    handle = await store.open_maildrop("alice")
    now = handle.body_now(info.uid)
    if answers_at_once(backend, octets):
        assert now == new.wire
    else:
        assert now is Pending.FETCH
    assert await handle.body(info.uid) == new.wire


async def test_a_download_is_answered_in_order_with_every_body_c0004(store: MailStore) -> None:
    """RETR 1, 2, ... (whatever a backend reads ahead): each body exactly once asked for,
    and asked again (a second RETR of one message) still the same bytes."""
    texts = [b"Subject: %d\r\n\r\n.line %d\r\n" % (n, n) for n in range(40)]
    infos = [await store.deliver("alice", prepare(text)) for text in texts]
    handle = await store.open_maildrop("alice")
    for info, text in zip(infos, texts, strict=True):
        now = handle.body_now(info.uid)
        wire = await handle.body(info.uid) if now is Pending.FETCH else now
        assert wire == prepare(text).wire
    now = handle.body_now(infos[3].uid)
    assert (await handle.body(infos[3].uid) if now is Pending.FETCH else now) == prepare(
        texts[3]
    ).wire


async def test_commit_removes_and_stamps_in_one_step_v0006_e0005(store: MailStore) -> None:
    """V0006: the marked messages are removed; E0005: the retrieved ones get their first
    retrieval time, and a later commit does not move it."""
    one, two, three = [await store.deliver("alice", prepare(SMALL)) for _ in range(3)]
    handle = await store.open_maildrop("alice")
    assert await handle.commit([two.uid, two.uid, 999_999], [one.uid], 100.0) == 1
    assert [info.uid for info in await store.snapshot("alice")] == [one.uid, three.uid]
    assert await test_contract._retrieved_at(store, one.uid) == 100.0
    again = await store.open_maildrop("alice")
    assert await again.commit([], [one.uid, three.uid], 200.0) == 0
    assert await test_contract._retrieved_at(store, one.uid) == 100.0
    assert await test_contract._retrieved_at(store, three.uid) == 200.0
    assert await again.commit([], [], 300.0) == 0
    await again.close()


async def test_commit_of_a_user_deleted_meanwhile_raises_unknown_user(store: MailStore) -> None:
    info = await store.deliver("alice", prepare(SMALL))
    handle = await store.open_maildrop("alice")
    await store.delete_user("alice")
    with pytest.raises(UnknownUser):
        await handle.commit([info.uid], [], 1.0)


# -- the timed store ----------------------------------------------------------


def _count(metrics: Metrics, sample: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


FETCH_COUNT = 'popbox_store_operation_seconds_count{operation="fetch"}'
FETCH_ERRORS = 'popbox_store_errors_total{operation="fetch"}'
COMMIT_COUNT = 'popbox_store_operation_seconds_count{operation="commit"}'


class DeferringHandle(MemoryMaildrop):
    """Reads as a remote store does: only the coroutine answers."""

    def body_now(self, uid: int) -> Pending:  # noqa: ARG002 - the contract's
        return Pending.FETCH


class Deferring(MemoryStore):
    async def open_maildrop(self, name: str) -> MemoryMaildrop:
        return DeferringHandle(self, name, await self.snapshot(name))


async def test_timed_store_times_body_as_fetch_and_leaves_body_now_untimed():
    """body_now is the RETR hot path: not timed; body (the wait) is one fetch each."""
    metrics = Metrics()
    timed = timed_store(MemoryStore(), metrics)
    await timed.open()
    await timed.add_user("alice", {})
    info = await timed.deliver("alice", prepare(SMALL))
    handle = await timed.open_maildrop("alice")
    assert handle.body_now(info.uid) == prepare(SMALL).wire
    assert handle.body_now(info.uid + 1) is None
    assert _count(metrics, FETCH_COUNT) == 0
    assert await handle.body(info.uid) == prepare(SMALL).wire
    assert _count(metrics, FETCH_COUNT) == 1
    assert await handle.commit([info.uid], [], 1.0) == 1
    assert _count(metrics, COMMIT_COUNT) == 1

    deferring_metrics = Metrics()
    deferring = timed_store(Deferring(), deferring_metrics)
    await deferring.open()
    await deferring.add_user("alice", {})
    info = await deferring.deliver("alice", prepare(SMALL))
    handle = await deferring.open_maildrop("alice")
    assert handle.body_now(info.uid) is Pending.FETCH
    assert _count(deferring_metrics, FETCH_COUNT) == 0
    assert await handle.body(info.uid) == prepare(SMALL).wire
    assert _count(deferring_metrics, FETCH_COUNT) == 1


async def test_timed_store_counts_body_now_failures_but_not_answers():
    """A failing store is a fetch error; UnknownUser is an answer, not a failure."""
    metrics = Metrics()
    raised: list[Exception] = [StoreTemporaryError("database went away"), UnknownUser("x")]

    class FlakyHandle(MemoryMaildrop):
        def body_now(self, uid: int) -> bytes | None:
            if raised:
                raise raised.pop(0)
            return super().body_now(uid)

    class Flaky(MemoryStore):
        async def open_maildrop(self, name: str) -> MemoryMaildrop:
            return FlakyHandle(self, name, await self.snapshot(name))

    timed = timed_store(Flaky(), metrics)
    await timed.open()
    await timed.add_user("alice", {})
    handle = await timed.open_maildrop("alice")
    with pytest.raises(StoreTemporaryError):
        handle.body_now(1)
    with pytest.raises(UnknownUser):
        handle.body_now(1)
    assert _count(metrics, FETCH_ERRORS) == 1
    assert handle.body_now(1) is None
    assert _count(metrics, FETCH_ERRORS) == 1
