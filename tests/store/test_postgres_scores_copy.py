"""The cluster's lockouts, copied into every process by LISTEN/NOTIFY.

Two ``PostgresStore`` instances on one database stand for two nodes.  A failure counted
on one reaches the other's copy when it commits, and the other answers the check
before a password from that copy, without a round trip; a copy that lost its
listening connection asks the database until it has listened and read the table again.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest

if not os.environ.get("PG_DSN"):
    pytest.importorskip("asyncpg")
from pg_copies import END_OTHER_SESSIONS, eventually, pool_uses, run_sql, two_nodes

from popbox.store.postgres import PostgresStore
from popbox.store.postgres_cluster import ScoreRules
from popbox.store.postgres_options import PostgresOptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from popbox.store.postgres_cluster import PostgresScores

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

RULES = ScoreRules(user_lockout=0, ip_lockout=2, lockout_duration=300.0, half_life=300.0)
IP, USER = "i:192.0.2.7", "u:alice"


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    async with two_nodes(pg_dsn) as pair:
        yield pair


async def live_scores(store: PostgresStore, max_tracked: int = 1000) -> PostgresScores:
    scores = store.cluster_scores(max_tracked=max_tracked)
    copy = scores.copy
    assert copy is not None
    await eventually(lambda: copy.live)
    return scores


async def test_a_lockout_on_one_node_is_answered_on_the_other_from_its_copy(
    nodes: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = nodes
    used = pool_uses(second, monkeypatch)
    here, there = await live_scores(first), await live_scores(second)
    now = time.time()
    used.clear()
    assert await there.check([IP, USER], USER) == (0.0, False)
    for _ in range(RULES.ip_lockout):
        await here.failed([IP, USER], now, RULES)
    await eventually(lambda: second_copy_check(there) >= now + RULES.lockout_duration)
    until, scored = await there.check([IP, USER], USER)
    assert until == pytest.approx(now + RULES.lockout_duration)
    assert scored
    assert used == []  # every check on the second node came from its copy


def second_copy_check(scores: PostgresScores) -> float:
    copy = scores.copy
    assert copy is not None
    return copy.check([IP], USER)[0]


async def test_a_copy_made_later_reads_the_lockouts_and_scores_in_the_table(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = nodes
    here = first.cluster_scores(max_tracked=1000)
    now = time.time()
    for _ in range(RULES.ip_lockout):
        await here.failed([IP, USER], now, RULES)
    there = await live_scores(second)
    until, scored = await there.check([IP, USER], USER)
    assert until == pytest.approx(now + RULES.lockout_duration)
    assert scored


async def test_forgiving_a_user_reaches_every_copy(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = nodes
    here, there = await live_scores(first), await live_scores(second)
    await here.failed([IP, USER], time.time(), RULES)
    copy = there.copy
    assert copy is not None
    await eventually(lambda: copy.check([], USER)[1])
    await here.forgive(USER)
    await eventually(lambda: not copy.check([], USER)[1])
    assert not (await here.check([IP, USER], USER))[1]


async def test_a_lost_listening_connection_asks_the_database_until_it_listens_again(
    nodes: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    first, second = nodes
    here, there = await live_scores(first), await live_scores(second)
    copy = there.copy
    assert copy is not None
    await run_sql(pg_dsn, END_OTHER_SESSIONS)
    await eventually(lambda: not copy.live)
    # Meanwhile the check is read from the table: a failure counted now is seen at once.
    now = time.time()
    for _ in range(RULES.ip_lockout):
        await here.failed([IP], now, RULES)
    assert (await there.check([IP], USER))[0] == pytest.approx(now + RULES.lockout_duration)
    await eventually(lambda: copy.live)  # listening again, the table read anew
    assert copy.check([IP], USER)[0] == pytest.approx(now + RULES.lockout_duration)


async def test_behind_a_transaction_pooler_every_check_asks_the_database(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_dsn, max_size=2, options=PostgresOptions(transaction_pooler=True))
    await store.open()
    try:
        used = pool_uses(store, monkeypatch)
        scores = store.cluster_scores(max_tracked=1000)
        assert await scores.check([IP, USER], USER) == (0.0, False)
        assert used == ["pool"]
    finally:
        await store.close()


async def test_the_copy_is_bounded_by_the_settings_max_tracked(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """[auth] max_tracked bounds the copy as it bounds a process's own scores: past it
    the user noted longest ago is dropped."""
    first, second = nodes
    here = first.cluster_scores(max_tracked=1000)
    copy = (await live_scores(second, max_tracked=2)).copy
    assert copy is not None
    for name in ("u:a", "u:b", "u:c"):
        await here.failed(["i:192.0.2.9", name], time.time(), RULES)
        await eventually(lambda name=name: copy.check([], name)[1])  # type: ignore[misc]
    assert not copy.check([], "u:a")[1]
    assert copy.check([], "u:b")[1]
