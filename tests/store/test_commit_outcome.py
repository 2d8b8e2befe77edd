"""Every reply to UPDATE and to a delivery states a known outcome (issue 15 item 2).

UPDATE is one transaction (V0006, DESIGN "UPDATE deletes in one transaction"): when any
part of it fails, nothing was removed and QUIT's -ERR says so truly.  A SQLite trigger
that makes the retrieved-at stamp fail shows it: with deletions committed first and the
stamp second, QUIT used to answer "not removed" for messages that were gone.

When the connection to PostgreSQL dies during COMMIT the outcome is unknown to the
client; popbox learns it (a commit token, a delivery key with the delivery's own stamp,
both written in the transaction) before answering.  A proxy between popbox and the
server (``pg_cutter``) loses either the COMMIT or its reply.  A delivery that did
commit is recognised when the MTA retries it, and not stored twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import TYPE_CHECKING

import asyncpg
import pytest
from pg_cutter import CommitCutter

from popbox.store import SQLITE_FILE_NAME
from popbox.store.base import CommitOutcomeUnknown, StoreTemporaryError
from popbox.store.message import prepare
from popbox.store.postgres import PostgresStore
from popbox_servers import USERS
from raw_pop3 import LOGIN, PLAINTEXT, Client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from popbox.store.base import NewMessage

TEXTS = [b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(1, 4)]
WINDOW = 3600.0


def keyed(text: bytes, key: str) -> NewMessage:
    return dataclasses.replace(prepare(text), delivery_key=key)


@pytest.fixture
def cutter(pg_dsn: str) -> Iterator[CommitCutter]:
    proxy = CommitCutter(pg_dsn)
    yield proxy
    proxy.close()


@pytest.fixture
async def pg_store(cutter: CommitCutter) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(cutter.dsn_through(), connect_timeout=2.0, max_size=4)
    await store.open()
    await store.add_user("alice", {})
    yield store
    await store.close()


# -- SQLite: UPDATE as one transaction, seen from a client -----------------------------


def test_quit_whose_retrieved_stamp_fails_removes_nothing_and_says_so_v0006(
    start_pop3_server,
):
    """V0006: all or none.  The stamp fails (a trigger), so the deletion must not stand,
    and the -ERR's "not removed" is the truth; the failure is one an administrator must
    fix (a constraint), so it is [SYS/PERM] (RFC 3206 s4), which does not say "try again"."""
    server = start_pop3_server(PLAINTEXT)
    delivered = server.deliver("alice", *TEXTS)
    database = server.config.data_dir / SQLITE_FILE_NAME
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute(
            "CREATE TRIGGER no_stamps BEFORE UPDATE OF retrieved_at ON messages"
            " BEGIN SELECT RAISE(ABORT, 'stamping is broken'); END"
        )
    finally:
        conn.close()
    with Client.connect(server) as client:
        client.line()
        client.send(LOGIN + b"RETR 1\r\nDELE 2\r\nQUIT\r\n")
        got = client.read_to_eof()
    assert got.endswith(b"-ERR [SYS/PERM] messages marked as deleted were not removed\r\n")
    assert server.uids("alice") == [d.info.uid for d in delivered]  # nothing removed


# -- PostgreSQL: a COMMIT whose reply is lost --------------------------------------------


@pytest.mark.parametrize("lost", ["reply", "commit"])
async def test_update_with_a_lost_commit_reply_learns_what_happened(
    pg_store: PostgresStore, cutter: CommitCutter, lost: str
) -> None:
    """The reply lost after the server committed: the commit's count, as if nothing had
    happened.  The COMMIT itself lost: a plain temporary failure, and nothing removed."""
    infos = [await pg_store.deliver("alice", prepare(text)) for text in TEXTS]
    handle = await pg_store.open_maildrop("alice")
    cutter.armed = lost
    if lost == "reply":
        assert await handle.commit([infos[1].uid], [infos[0].uid], 100.0) == 1
        left = [infos[0].uid, infos[2].uid]
    else:
        with pytest.raises(StoreTemporaryError) as failed:
            await handle.commit([infos[1].uid], [infos[0].uid], 100.0)
        assert not isinstance(failed.value, CommitOutcomeUnknown)
        left = [info.uid for info in infos]
    assert cutter.cuts == 1
    assert [info.uid for info in await pg_store.snapshot("alice")] == left
    stamped = (await pg_store.export_state("alice")).retrieved_at
    assert stamped == ({infos[0].uid: 100.0} if lost == "reply" else {})


async def test_update_whose_outcome_cannot_be_learnt_in_time_says_unknown(
    pg_store: PostgresStore, cutter: CommitCutter
) -> None:
    """The database stays unreachable after the reply was lost: neither +OK nor "not
    removed" would be the truth, so the store says it does not know (within its bound)."""
    [info] = [await pg_store.deliver("alice", prepare(TEXTS[0]))]
    handle = await pg_store.open_maildrop("alice")
    cutter.armed = "reply"
    cutter.refuse = True
    with pytest.raises(CommitOutcomeUnknown):
        await handle.commit([info.uid], [], 100.0)
    cutter.refuse = False
    assert await pg_store.snapshot("alice") == []  # it had committed after all


def test_quit_over_a_connection_that_dies_at_commit_is_answered_truly_v0006(
    start_pop3_server, cutter: CommitCutter
):
    """End to end: QUIT's +OK although the store's connection died during COMMIT."""
    server = start_pop3_server(
        PLAINTEXT, sections={"storage": {"backend": "postgresql", "dsn": cutter.dsn_through()}}
    )
    assert set(USERS) >= {"alice"}
    [first, second] = server.deliver("alice", *TEXTS[:2])
    with Client.connect(server) as client:
        client.line()
        client.send(LOGIN)
        client.line()
        client.line()
        cutter.armed = "reply"
        client.send(b"DELE 1\r\nQUIT\r\n")
        got = client.read_to_eof()
    assert cutter.cuts == 1
    assert got == b"+OK message 1 deleted\r\n+OK signing off, 1 message deleted\r\n"
    assert server.uids("alice") == [second.info.uid]
    assert first.info.uid not in server.uids("alice")


# -- deliveries: a lost reply, and the MTA's retry ----------------------------------------


@pytest.mark.parametrize("lost", ["reply", "commit"])
async def test_delivery_with_a_lost_commit_reply_is_resolved_and_its_retry_recognised(
    pg_store: PostgresStore, cutter: CommitCutter, lost: str
) -> None:
    """Reply lost: the delivery is acknowledged (it is stored).  COMMIT lost: a temporary
    failure (nothing stored).  Either way the MTA's retry ends with exactly one copy."""
    message = keyed(TEXTS[0], "sha256:one")
    cutter.armed = lost
    if lost == "reply":
        info = await pg_store.deliver("alice", message, dedup_window=WINDOW)
    else:
        with pytest.raises(StoreTemporaryError):
            await pg_store.deliver("alice", message, dedup_window=WINDOW)
        assert await pg_store.snapshot("alice") == []
        info = await pg_store.deliver("alice", message, dedup_window=WINDOW)
    assert cutter.cuts == 1
    retried = await pg_store.deliver("alice", message, dedup_window=WINDOW)
    assert retried == info
    assert await pg_store.snapshot("alice") == [info]


async def test_update_that_times_out_is_known_not_to_have_committed(
    pg_dsn: str, cutter: CommitCutter
) -> None:
    """A statement timeout is no lost reply: the driver cancels it and rolls back, and the
    connection stays in the pool.  The look-up must see that (even on that very
    connection) and answer "try again" at once, not "unknown" after the bound."""
    store = PostgresStore(cutter.dsn_through(), connect_timeout=5.0, command_timeout=0.5)
    await store.open()
    try:
        await store.add_user("alice", {})
        info = await store.deliver("alice", prepare(TEXTS[0]))
        handle = await store.open_maildrop("alice")
        blocker = await asyncpg.connect(pg_dsn)
        try:
            async with blocker.transaction():
                await blocker.execute("SELECT 1 FROM messages FOR UPDATE")  # holds the row
                with pytest.raises(StoreTemporaryError) as failed:
                    await asyncio.wait_for(handle.commit([info.uid], [], 1.0), 4.0)
                assert not isinstance(failed.value, CommitOutcomeUnknown)
        finally:
            await blocker.close()
        assert await store.snapshot("alice") == [info]
    finally:
        await store.close()
