"""One contract suite for every MailStore backend.

Each test runs against the in-memory store and SQLite, and against PostgreSQL in a
throwaway database from the ``pg_dsn`` fixture (tests/store/conftest.py: ``PG_DSN``, or
a local server; skipped only when neither is there).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import pytest

from popbox.store import open_store
from popbox.store.base import (
    DeliveryRefused,
    MaildropLocked,
    MailStore,
    RefusalReason,
    UnknownUser,
    UserExists,
    UserRecord,
)
from popbox.store.message import prepare
from popbox.store.store_copy import MailboxExporter, MailboxState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

MESSAGE = b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n"


class FakeClock:
    """POSIX seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _factory(
    backend: str, data_dir: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Callable[[], MailStore]:
    if backend == "postgres":
        dsn = str(request.getfixturevalue("pg_dsn"))
        return lambda: open_store("postgresql", data_dir=data_dir, dsn=dsn, clock=clock)
    return lambda: open_store(backend, data_dir=data_dir, dsn="", clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[MailStore]:
    opened = _factory(backend, tmp_path, clock, request)()
    await opened.open()
    # A shared PostgreSQL database may hold a previous run's users.
    for user in await opened.list_users():
        await opened.delete_user(user.name)
    await opened.add_user("alice", {"argon2id": "$argon2id$alice"})
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], MailStore]:
    return _factory(str(request.param), tmp_path, FakeClock(), request)


async def _retrieved_at(store: MailStore, uid: int) -> float | None:
    # The contract has no reader for the first-retrieval time; every backend exports it.
    assert isinstance(store, MailboxExporter)
    return (await store.export_state("alice")).retrieved_at.get(uid)


# -- users ------------------------------------------------------------------


async def test_add_get_list_users_e0003(store: MailStore) -> None:
    """E0003: per-mailbox storage quota, default inherited from the server setting."""
    await store.add_user("bob", {"argon2id": "b", "nt": "n"}, quota=1000)
    assert await store.get_user("bob") == UserRecord("bob", {"argon2id": "b", "nt": "n"}, 1000)
    assert await store.get_user("alice") == UserRecord("alice", {"argon2id": "$argon2id$alice"})
    assert await store.get_user("nobody") is None
    assert [user.name for user in await store.list_users()] == ["alice", "bob"]


async def test_find_user_answers_as_get_user_after_each_change(store: MailStore) -> None:
    """find_user: 'As get_user, for logins': with no copy kept (none here: no listener is
    started), every answer is the row as it is now."""
    assert await store.find_user("alice") == await store.get_user("alice")
    assert await store.find_user("nobody") is None
    await store.set_disabled("alice", "on leave")
    found = await store.find_user("alice")
    assert found is not None
    assert found.disabled_reason == "on leave"
    await store.add_user("nobody", {})
    assert await store.find_user("nobody") == UserRecord("nobody", {})
    await store.delete_user("alice")
    assert await store.find_user("alice") is None


async def test_add_existing_user_raises_user_exists(store: MailStore) -> None:
    """add_user: 'Create a user with an empty maildrop.  Raises UserExists.'"""
    with pytest.raises(UserExists):
        await store.add_user("alice", {})


async def test_set_verifiers_replaces_all_at_once(store: MailStore) -> None:
    """set_verifiers: 'Replace every verifier of a user at once.'"""
    await store.set_verifiers("alice", {"scram-sha-256": "s"})
    user = await store.get_user("alice")
    assert user is not None
    assert dict(user.verifiers) == {"scram-sha-256": "s"}


async def test_set_disabled_keeps_reason_and_enable_clears_it(store: MailStore) -> None:
    """set_disabled: 'Disable a user's logins with reason ("" for none), or with None
    enable them.  Raises UnknownUser.'"""
    await store.set_disabled("alice", "left the company")
    user = await store.get_user("alice")
    assert user is not None
    assert user.disabled_reason == "left the company"
    assert user.verifiers == {"argon2id": "$argon2id$alice"}  # credentials kept
    await store.set_disabled("alice", "")
    assert [u.disabled_reason for u in await store.list_users()] == [""]
    await store.set_disabled("alice", None)
    user = await store.get_user("alice")
    assert user is not None
    assert user.disabled_reason is None
    with pytest.raises(UnknownUser):
        await store.set_disabled("nobody", "x")


async def test_set_quota_overrides_and_clears_e0003(store: MailStore) -> None:
    """E0003: per-mailbox override of the storage quota; None inherits the default."""
    await store.set_quota("alice", 5000)
    assert (await store.get_user("alice")) == UserRecord(
        "alice", {"argon2id": "$argon2id$alice"}, 5000
    )
    await store.set_quota("alice", None)
    user = await store.get_user("alice")
    assert user is not None
    assert user.quota is None


async def test_delete_user_removes_messages(store: MailStore) -> None:
    """delete_user: 'Remove a user and every message of theirs.'"""
    info = await store.deliver("alice", prepare(MESSAGE))
    await store.delete_user("alice")
    assert await store.get_user("alice") is None
    assert await store.fetch("alice", info.uid) is None
    await store.add_user("alice", {})
    assert await store.snapshot("alice") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set_verifiers("nobody", {}),
        lambda s: s.set_quota("nobody", 1),
        lambda s: s.delete_user("nobody"),
        lambda s: s.snapshot("nobody"),
        lambda s: s.usage("nobody"),
        lambda s: s.deliver("nobody", prepare(MESSAGE)),
        lambda s: s.delete("nobody", [1]),
        lambda s: s.mark_retrieved("nobody", [1], 0.0),
        lambda s: s.acquire_lock("nobody", "owner", 60.0),
    ],
)
async def test_unknown_user_raises(
    store: MailStore, call: Callable[[MailStore], Awaitable[object]]
) -> None:
    """The contract: methods acting on a named user raise UnknownUser when it is absent."""
    with pytest.raises(UnknownUser):
        await call(store)


async def test_fetch_and_release_of_unknown_user_are_quiet(store: MailStore) -> None:
    """fetch: 'None if it has been removed since'; release_lock: 'otherwise do nothing'."""
    assert await store.fetch("nobody", 1) is None
    await store.release_lock("nobody", "owner")


# -- delivery and unique-ids ------------------------------------------------


async def test_deliver_assigns_increasing_uids_c0007(store: MailStore) -> None:
    """C0007: UIDL unique-ids are decimal integers, increasing."""
    uids = [(await store.deliver("alice", prepare(MESSAGE))).uid for _ in range(3)]
    assert uids == sorted(set(uids))
    assert uids[0] >= 1


async def test_uid_never_reused_after_delete_c0008(store: MailStore) -> None:
    """C0008: unique-ids are never reused in a mailbox, even after deletion."""
    first = await store.deliver("alice", prepare(MESSAGE))
    assert await store.delete("alice", [first.uid]) == 1
    second = await store.deliver("alice", prepare(MESSAGE))
    assert second.uid > first.uid


async def test_legacy_uidl_is_kept_c0009(store: MailStore) -> None:
    """C0009: messages imported from another server keep their old unique-id strings."""
    info = await store.deliver("alice", prepare(MESSAGE, legacy_uidl="old-7f3a"))
    [listed] = await store.snapshot("alice")
    assert info.uidl == listed.uidl == "old-7f3a"
    assert listed.legacy_uidl == "old-7f3a"
    assert isinstance(listed.uid, int)


async def test_snapshot_is_ordered_with_exact_and_stored_sizes_2_1_4(
    store: MailStore, clock: FakeClock
) -> None:
    """2.1.4: STAT and LIST report exact RFC 822 sizes, before byte-stuffing."""
    small = prepare(b"A: b\r\n\r\nx\r\n")
    stuffed = prepare(MESSAGE, received_at=1234.5)
    one = await store.deliver("alice", small)
    two = await store.deliver("alice", stuffed)
    snapshot = await store.snapshot("alice")
    assert [info.uid for info in snapshot] == [one.uid, two.uid]
    assert snapshot == [one, two]
    assert snapshot[1].size == len(MESSAGE)
    assert snapshot[1].stored_size == len(MESSAGE) + 1  # one stuffed dot
    assert snapshot[0].received_at == clock.now
    assert snapshot[1].received_at == 1234.5


async def test_fetch_returns_exact_wire_then_none_after_delete(store: MailStore) -> None:
    """Messages are stored in wire form, so RETR is a straight copy (DESIGN section 1)."""
    new = prepare(MESSAGE + b"8-bit \xe9\xff\r\n")
    info = await store.deliver("alice", new)
    assert await store.fetch("alice", info.uid) == new.wire
    await store.delete("alice", [info.uid])
    assert await store.fetch("alice", info.uid) is None


async def test_delete_is_atomic_and_skips_gone_uids_v0006(store: MailStore) -> None:
    """V0006: popbox removes the marked messages atomically (all or none)."""
    uids = [(await store.deliver("alice", prepare(MESSAGE))).uid for _ in range(4)]
    await store.delete("alice", [uids[0]])
    removed = await store.delete("alice", [uids[0], uids[1], uids[2], uids[2], 999_999])
    assert removed == 2
    assert [info.uid for info in await store.snapshot("alice")] == [uids[3]]
    assert await store.delete("alice", []) == 0


async def test_over_quota_delivery_is_refused_and_stores_nothing_e0004(
    store: MailStore,
) -> None:
    """E0004: delivery over quota is refused with a clear error and nothing is lost."""
    new = prepare(MESSAGE)
    kept = await store.deliver("alice", new, quota=2 * new.size)
    with pytest.raises(DeliveryRefused) as refused:
        await store.deliver("alice", new, quota=2 * new.size - 1)
    assert refused.value.reason is RefusalReason.OVER_QUOTA
    assert await store.snapshot("alice") == [kept]
    assert await store.usage("alice") == new.size
    # A refusal must not consume a unique-id either: the counter moves only on success.
    after = await store.deliver("alice", new, quota=2 * new.size)
    assert after.uid == kept.uid + 1


async def test_usage_sums_exact_sizes_e0003(store: MailStore) -> None:
    """E0003: the quota counts the exact sizes of the user's messages."""
    assert await store.usage("alice") == 0
    sizes = [
        (await store.deliver("alice", prepare(b"A: b\r\n\r\n" + b"x" * n))).size for n in (1, 50)
    ]
    assert await store.usage("alice") == sum(sizes)


async def test_mark_retrieved_keeps_first_time_e0005(store: MailStore) -> None:
    """E0005: retention distinguishes retrieved from never-retrieved messages."""
    one = await store.deliver("alice", prepare(MESSAGE))
    two = await store.deliver("alice", prepare(MESSAGE))
    await store.mark_retrieved("alice", [one.uid, 999_999], 100.0)
    await store.mark_retrieved("alice", [one.uid], 200.0)
    assert await _retrieved_at(store, one.uid) == 100.0
    assert await _retrieved_at(store, two.uid) is None


async def test_export_state_keeps_the_counter_past_deleted_uids_c0008(store: MailStore) -> None:
    """C0008: a uid is never reused, so a copied mailbox takes its counter along."""
    assert isinstance(store, MailboxExporter)
    one = await store.deliver("alice", prepare(MESSAGE))
    two = await store.deliver("alice", prepare(MESSAGE))
    await store.mark_retrieved("alice", [one.uid], 100.0)
    await store.delete("alice", [two.uid])
    await store.set_quota_warned("alice", warned=True)
    keyed = dataclasses.replace(prepare(MESSAGE), import_key="old-server/1")
    [three] = await store.import_messages("alice", [keyed])
    assert await store.export_state("alice") == MailboxState(
        next_uid=three.uid + 1,
        retrieved_at={one.uid: 100.0},
        quota_warned=True,
        import_keys=frozenset({"old-server/1"}),
    )
    await store.delete("alice", [three.uid])  # the newest uid gone: the counter stays
    assert (await store.export_state("alice")).next_uid == three.uid + 1


async def test_export_state_of_unknown_user_raises(store: MailStore) -> None:
    """MailboxExporter.export_state: 'Raises UnknownUser.'"""
    assert isinstance(store, MailboxExporter)
    with pytest.raises(UnknownUser):
        await store.export_state("nobody")


async def test_concurrent_deliveries_get_distinct_increasing_uids_c0007(
    store: MailStore,
) -> None:
    """C0007: unique-ids are increasing and unique, however deliveries interleave."""
    infos = await asyncio.gather(*(store.deliver("alice", prepare(MESSAGE)) for _ in range(50)))
    uids = [info.uid for info in infos]
    assert len(set(uids)) == 50
    assert [info.uid for info in await store.snapshot("alice")] == sorted(uids)


# -- maildrop lock (lock_mailbox = true) -------------------------------------


async def test_lock_refuses_second_owner_until_release_c0004(store: MailStore) -> None:
    """C0004: with lock_mailbox = true a second login gets -ERR [IN-USE]."""
    await store.acquire_lock("alice", "session-1", 60.0)
    with pytest.raises(MaildropLocked):
        await store.acquire_lock("alice", "session-2", 60.0)
    await store.release_lock("alice", "session-2")  # not the holder: nothing happens
    with pytest.raises(MaildropLocked):
        await store.acquire_lock("alice", "session-2", 60.0)
    await store.release_lock("alice", "session-1")
    await store.acquire_lock("alice", "session-2", 60.0)


async def test_lock_renewal_extends_lease_c0004(store: MailStore, clock: FakeClock) -> None:
    """acquire_lock: 'Holders renew by acquiring again with the same owner.'"""
    await store.acquire_lock("alice", "session-1", 60.0)
    clock.now += 50
    await store.acquire_lock("alice", "session-1", 60.0)
    clock.now += 50  # past the first lease, inside the renewed one
    with pytest.raises(MaildropLocked):
        await store.acquire_lock("alice", "session-2", 60.0)


async def test_expired_lease_is_taken_over_c0004(store: MailStore, clock: FakeClock) -> None:
    """acquire_lock: 'A lock whose lease has run out is taken over.'"""
    await store.acquire_lock("alice", "crashed", 60.0)
    clock.now += 60
    await store.acquire_lock("alice", "session-2", 60.0)
    with pytest.raises(MaildropLocked):
        await store.acquire_lock("alice", "crashed", 60.0)


# -- persistence -------------------------------------------------------------


async def test_reopened_store_keeps_everything(reopen: Callable[[], MailStore]) -> None:
    """DESIGN section 3: delivery is durable before it is acknowledged."""
    first = reopen()
    await first.open()
    for user in await first.list_users():
        await first.delete_user(user.name)
    await first.add_user("alice", {"argon2id": "a"}, quota=10_000)
    new = prepare(MESSAGE, legacy_uidl="x1")
    gone = await first.deliver("alice", prepare(MESSAGE))
    kept = await first.deliver("alice", new)
    await first.delete("alice", [gone.uid])
    await first.close()

    second = reopen()
    await second.open()
    try:
        assert await second.get_user("alice") == UserRecord("alice", {"argon2id": "a"}, 10_000)
        assert await second.snapshot("alice") == [kept]
        assert await second.fetch("alice", kept.uid) == new.wire
        # C0008: the counter survives a restart, so the deleted uid is not handed out again.
        assert (await second.deliver("alice", prepare(MESSAGE))).uid > kept.uid
    finally:
        await second.close()


async def test_migrations_apply_once(reopen: Callable[[], MailStore]) -> None:
    """Schema migrations run in open(), and opening again finds nothing left to apply."""
    for _ in range(2):
        opened = reopen()
        await opened.open()
        await opened.close()
    third = reopen()
    await third.open()
    try:
        await third.list_users()
    finally:
        await third.close()
