"""User records copied into each process for logins, forgotten when a change commits.

Two ``PostgresStore`` instances on one database stand for two nodes.  The first keeps
the records its logins read (``find_user``) while its listening connection is up; a
change made on the other node, or by hand in SQL, reaches it when it commits and the
next login reads the table.  ``AccountsCopy`` itself is tested first, without a database.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import pytest

if not os.environ.get("PG_DSN"):
    pytest.importorskip("asyncpg")
from pg_copies import END_OTHER_SESSIONS, WAIT, eventually, pool_uses, run_sql, two_nodes

from popbox.directory.base import Account
from popbox.directory.mailboxes import ensure_mailbox
from popbox.store.base import UserRecord
from popbox.store.message import prepare
from popbox.store.postgres import PostgresStore
from popbox.store.postgres_accounts_copy import AccountsCopy
from popbox.store.postgres_options import PostgresOptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ALICE = UserRecord(name="alice", verifiers={"plain": "x"}, quota=None, disabled_reason=None)
MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


def record(name: str) -> UserRecord:
    return UserRecord(name=name, verifiers={}, quota=None, disabled_reason=None)


# -- the copy alone ---------------------------------------------------------------------


def test_a_copy_keeps_nothing_until_its_listener_begins_and_forgets_all_at_the_end() -> None:
    copy = AccountsCopy()
    copy.keep("alice", ALICE, copy.ticket())
    assert copy.get("alice") == (False, None)
    assert len(copy) == 0
    copy.begin()
    copy.keep("alice", ALICE, copy.ticket())
    copy.keep("nobody", None, copy.ticket())
    assert copy.get("alice") == (True, ALICE)
    assert copy.get("nobody") == (True, None)  # no such user, known without a read
    copy.end()
    assert copy.get("alice") == (False, None)
    assert len(copy) == 0


def test_a_read_that_a_notification_overtook_is_used_once_and_not_kept() -> None:
    copy = AccountsCopy()
    copy.begin()
    ticket = copy.ticket()
    copy.heard("bob")  # any change, while alice's read is on its way
    copy.keep("alice", ALICE, ticket)
    assert copy.get("alice") == (False, None)
    ticket = copy.ticket()
    copy.end()  # the listener lost while the read was on its way
    copy.begin()
    copy.keep("alice", ALICE, ticket)
    assert copy.get("alice") == (False, None)


def test_a_notification_forgets_its_user_only() -> None:
    copy = AccountsCopy()
    copy.begin()
    for name in ("alice", "bob"):
        copy.keep(name, record(name), copy.ticket())
    copy.heard("alice")
    assert copy.get("alice") == (False, None)
    assert copy.get("bob") == (True, record("bob"))


def test_the_copy_holds_its_limit_forgetting_the_least_recently_used() -> None:
    copy = AccountsCopy(limit=2)
    copy.begin()
    copy.keep("a", record("a"), copy.ticket())
    copy.keep("b", record("b"), copy.ticket())
    assert copy.get("a")[0]  # a is now the more recently used
    copy.keep("c", record("c"), copy.ticket())
    assert len(copy) == 2
    assert not copy.get("b")[0]
    assert copy.get("a")[0]
    assert copy.get("c")[0]


# -- two nodes on one database ----------------------------------------------------------


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    async with two_nodes(pg_dsn) as (first, second):
        for name in ("alice", "bob"):
            await first.add_user(name, {"plain": "old"})
        # The server starts the listener with its brute-force scores.
        first.cluster_scores(max_tracked=1000)
        await eventually(lambda: first.accounts.live)
        yield first, second


async def kept(store: PostgresStore, name: str) -> None:
    """Read ``name`` for a login until the copy keeps what it read (a notification of
    the fixture's own changes may make the first read a one-off)."""
    await store.find_user(name)
    deadline = time.monotonic() + WAIT
    while not store.accounts.get(name)[0]:
        assert time.monotonic() < deadline, f"{name} was never kept"
        await asyncio.sleep(0.02)
        await store.find_user(name)


async def test_a_login_read_again_costs_no_round_trip(
    nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = nodes
    await kept(first, "alice")
    used = pool_uses(first, monkeypatch)
    found = await first.find_user("alice")
    assert found is not None
    assert found.verifiers == {"plain": "old"}
    assert used == []
    # What must see the row as it is now still reads it.
    assert await first.get_user("alice") == found
    assert used == ["pool"]


async def test_an_unknown_name_is_kept_until_the_user_is_added(
    nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept, so that a failed login for a name that does not exist takes as long as one
    for a user whose record is kept."""
    first, second = nodes
    await kept(first, "carol")
    used = pool_uses(first, monkeypatch)
    assert await first.find_user("carol") is None
    assert used == []
    await second.add_user("carol", {"plain": "new"})
    await eventually(lambda: not first.accounts.get("carol")[0])
    found = await first.find_user("carol")
    assert found is not None
    assert found.name == "carol"


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        (lambda s: s.set_verifiers("alice", {"plain": "new"}), {"verifiers": {"plain": "new"}}),
        (lambda s: s.set_disabled("alice", "left the company"), {"disabled": "left the company"}),
        (lambda s: s.set_quota("alice", 1000), {"quota": 1000}),
        (lambda s: s.delete_user("alice"), None),
    ],
    ids=["password", "disabled", "quota", "deleted"],
)
async def test_a_change_on_another_node_reaches_the_next_login_when_it_commits(
    nodes: tuple[PostgresStore, PostgresStore], change, seen
) -> None:
    first, second = nodes
    await kept(first, "alice")
    await change(second)
    await eventually(lambda: not first.accounts.get("alice")[0])
    found = await first.find_user("alice")
    if seen is None:
        assert found is None
        return
    assert found is not None
    assert {
        "verifiers": found.verifiers,
        "disabled": found.disabled_reason,
        "quota": found.quota,
    }.items() >= seen.items()


async def test_an_administrators_own_sql_is_heard_too(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    first, _ = nodes
    await kept(first, "alice")
    await run_sql(pg_dsn, "UPDATE users SET disabled = 'by hand' WHERE name = 'alice'")
    await eventually(lambda: not first.accounts.get("alice")[0])
    found = await first.find_user("alice")
    assert found is not None
    assert found.disabled_reason == "by hand"


async def test_deliveries_notify_nothing(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = nodes
    await kept(first, "alice")
    await kept(first, "bob")
    for _ in range(3):
        await second.deliver("alice", prepare(MESSAGE))
    # Notifications arrive in commit order: once bob's change is heard, a notification
    # from the deliveries before it would have been heard as well.
    await second.set_quota("bob", 5)
    await eventually(lambda: not first.accounts.get("bob")[0])
    assert first.accounts.get("alice")[0]


async def test_a_lost_listener_reads_every_login_from_the_table_until_it_listens_again(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    first, second = nodes
    await kept(first, "alice")
    await run_sql(pg_dsn, END_OTHER_SESSIONS)
    await eventually(lambda: not first.accounts.live)
    assert len(first.accounts) == 0
    # A change made while nothing listens is seen by the next login all the same.
    for attempt in range(50):  # the pools' connections were ended too
        try:
            await second.set_verifiers("alice", {"plain": "changed"})
            break
        except Exception:  # noqa: BLE001 - StoreTemporaryError until the pool reconnects
            assert attempt < 49
            await asyncio.sleep(0.1)
    found = await first.find_user("alice")
    assert found is not None
    assert found.verifiers == {"plain": "changed"}
    await eventually(lambda: first.accounts.live)
    await kept(first, "alice")


async def test_a_directory_users_mailbox_is_made_once_then_found_in_the_copy(
    nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LDAP or passwd-file user's first login makes the mailbox; later ones cost no
    round trip for it."""
    first, _ = nodes
    account = Account("dave@example.org", quota_bytes=5000)
    await ensure_mailbox(first, account)
    made = await first.get_user("dave@example.org")
    assert made is not None
    assert made.quota == 5000
    await kept(first, "dave@example.org")
    used = pool_uses(first, monkeypatch)
    await ensure_mailbox(first, account)
    assert used == []


async def test_behind_a_transaction_pooler_every_login_reads_the_table(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_dsn, max_size=2, options=PostgresOptions(transaction_pooler=True))
    await store.open()
    try:
        await store.add_user("alice", {})
        store.cluster_scores(max_tracked=1000)  # no listener behind a pooler
        used = pool_uses(store, monkeypatch)
        for _ in range(3):
            assert await store.find_user("alice") is not None
        assert used == ["pool"] * 3
        assert not store.accounts.live
    finally:
        await store.close()
