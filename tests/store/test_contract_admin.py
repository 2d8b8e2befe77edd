"""The admin records (API tokens) on every backend, PostgreSQL included.

Schema version 4 adds them on SQLite and on PostgreSQL; the same tests run against the
in-memory store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from popbox.store import open_store
from popbox.store.admin_records import TokenRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from popbox.store.base import MailStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailStore]:
    if request.param == "postgres":
        dsn = str(request.getfixturevalue("pg_dsn"))
        opened = open_store("postgresql", data_dir=tmp_path, dsn=dsn)
    else:
        opened = open_store(request.param, data_dir=tmp_path, dsn="")
    await opened.open()
    for token in await opened.admin.tokens():
        await opened.admin.revoke_token(token.id)
    for user in await opened.list_users():
        await opened.delete_user(user.name)
    await opened.add_user("alice", {})
    await opened.add_user("bob", {})
    yield opened
    await opened.close()


async def test_tokens_are_added_found_by_digest_listed_and_revoked(store: MailStore) -> None:
    first = TokenRecord("t1", "d" * 64, "read", 100.0, None, "ci")
    second = TokenRecord("t2", "e" * 64, "admin", 200.0, 300.5)
    await store.admin.add_token(second)
    await store.admin.add_token(first)
    assert list(await store.admin.tokens()) == [first, second]  # oldest first
    assert await store.admin.token_by_digest("e" * 64) == second
    assert await store.admin.token_by_digest("f" * 64) is None
    assert await store.admin.revoke_token("t1") is True
    assert await store.admin.revoke_token("t1") is False
    assert list(await store.admin.tokens()) == [second]
    assert await store.admin.token_by_digest("d" * 64) is None


async def test_a_user_deleted_and_added_again_starts_enabled(store: MailStore) -> None:
    await store.set_disabled("bob", "spam")
    await store.delete_user("bob")
    await store.add_user("bob", {})
    user = await store.get_user("bob")
    assert user is not None
    assert user.disabled_reason is None
