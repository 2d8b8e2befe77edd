"""The store contract for mail coming in: imports, quota warnings and retention.

The same backends as ``test_contract.py`` (whose fixtures these tests reuse): memory,
SQLite, and PostgreSQL when a server is there.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
import test_contract

from popbox.store.base import UnknownUser
from popbox.store.message import prepare

if TYPE_CHECKING:
    from test_contract import FakeClock

    from popbox.store.base import MailStore, NewMessage

# The contract suite's fixtures, so these tests run over exactly the same backends.
backend = test_contract.backend
clock = test_contract.clock
store = test_contract.store

MESSAGE = b"Subject: imported\r\n\r\nbody\r\n"


def _keyed(key: str | None, **changes: object) -> NewMessage:
    return dataclasses.replace(prepare(MESSAGE), import_key=key, **changes)  # type: ignore[arg-type]


async def test_import_messages_stores_a_batch_in_order_c0009(store: MailStore) -> None:
    """C0009: imported messages keep their old unique-id strings, in source order."""
    batch = [
        _keyed("k1", legacy_uidl="old-1", received_at=10.0),
        _keyed("k2", legacy_uidl="old-2", received_at=20.0),
        _keyed(None),
    ]
    stored = await store.import_messages("alice", batch)
    assert [info.uidl for info in stored][:2] == ["old-1", "old-2"]
    assert [info.uid for info in stored] == sorted({info.uid for info in stored})
    assert await store.snapshot("alice") == list(stored)
    assert stored[0].received_at == 10.0
    assert await store.fetch("alice", stored[2].uid) == batch[2].wire


async def test_import_messages_skips_keys_already_imported(store: MailStore) -> None:
    """Re-running an interrupted import stores nothing twice, even after a deletion."""
    first = await store.import_messages("alice", [_keyed("a"), _keyed("b")])
    await store.delete("alice", [first[0].uid])
    again = await store.import_messages("alice", [_keyed("a"), _keyed("b"), _keyed("c")])
    assert len(again) == 1
    assert [info.uid for info in await store.snapshot("alice")] == [first[1].uid, again[0].uid]
    # A key repeated inside one batch is stored once as well.
    twice = await store.import_messages("alice", [_keyed("d"), _keyed("d")])
    assert len(twice) == 1


async def test_import_raises_counter_above_numeric_uidls_c0008(store: MailStore) -> None:
    """C0008: a uid given out after the import never shows an imported unique-id."""
    await store.deliver("alice", prepare(MESSAGE))
    stored = await store.import_messages(
        "alice", [_keyed("x", legacy_uidl="500"), _keyed(None)], uids_above=500
    )
    assert stored[0].uid > 500
    assert stored[1].uid == stored[0].uid + 1
    later = await store.deliver("alice", prepare(MESSAGE))
    assert later.uid == stored[1].uid + 1
    # The counter is never lowered.
    lower = await store.import_messages("alice", [_keyed("y")], uids_above=3)
    assert lower[0].uid == later.uid + 1


async def test_import_ignores_quota_and_counts_in_usage_e0003(store: MailStore) -> None:
    """E0003: an administrator's import is not refused by the quota, but counts in usage."""
    await store.set_quota("alice", 1)
    stored = await store.import_messages("alice", [_keyed("q")])
    assert await store.usage("alice") == stored[0].size


async def test_import_of_unknown_user_raises(store: MailStore) -> None:
    with pytest.raises(UnknownUser):
        await store.import_messages("nobody", [_keyed("k")])
    with pytest.raises(UnknownUser):
        await store.set_quota_warned("nobody", warned=True)
    with pytest.raises(UnknownUser):
        await store.expire("nobody", retrieved_before=1.0, unretrieved_before=1.0)


async def test_quota_warned_flag_is_test_and_set_e0004(store: MailStore) -> None:
    """E0004: the warning flag reports its previous value, so one delivery wins."""
    assert await store.set_quota_warned("alice", warned=True) is False
    assert await store.set_quota_warned("alice", warned=True) is True
    assert await store.set_quota_warned("alice", warned=False) is True
    assert await store.set_quota_warned("alice", warned=False) is False


async def test_expire_removes_only_what_is_due_e0005(store: MailStore, clock: FakeClock) -> None:
    """E0005: retention keeps retrieved and never-retrieved messages for separate times."""
    old_unread = await store.deliver("alice", prepare(MESSAGE, received_at=100.0))
    new_unread = await store.deliver("alice", prepare(MESSAGE, received_at=300.0))
    old_read = await store.deliver("alice", prepare(MESSAGE, received_at=50.0))
    new_read = await store.deliver("alice", prepare(MESSAGE, received_at=50.0))
    await store.mark_retrieved("alice", [old_read.uid], 150.0)
    await store.mark_retrieved("alice", [new_read.uid], 250.0)

    assert await store.expire("alice", retrieved_before=None, unretrieved_before=None) == 0
    assert await store.expire("alice", retrieved_before=200.0, unretrieved_before=None) == 1
    assert await store.expire("alice", retrieved_before=None, unretrieved_before=200.0) == 1
    left = [info.uid for info in await store.snapshot("alice")]
    assert left == [new_unread.uid, new_read.uid]
    assert old_unread.uid not in left


async def test_imported_retrieved_time_counts_for_retention_e0005(store: MailStore) -> None:
    """E0005: a message imported as already read expires as a retrieved one."""
    [read, unread] = await store.import_messages(
        "alice",
        [_keyed("r", received_at=10.0, retrieved_at=20.0), _keyed("u", received_at=10.0)],
    )
    assert await store.expire("alice", retrieved_before=30.0, unretrieved_before=None) == 1
    assert [info.uid for info in await store.snapshot("alice")] == [unread.uid]
    assert read.uid != unread.uid
