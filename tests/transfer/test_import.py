"""Import semantics: kept unique-ids (C0009), the raised counter (C0008), resuming."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from popbox.config import RetentionConfig
from popbox.delivery.retention import expire_all
from popbox.store.base import StoreTemporaryError, UnknownUser
from popbox.store.memory import MemoryStore
from popbox.store.message import normalise, prepare
from popbox.transfer.exporter import export_maildir, export_mbox
from popbox.transfer.importer import ImportOptions, run_import
from popbox.transfer.sources import NotImported, SourceMessage, read_maildir, read_mbox
from popbox.transfer.uidl import read_uidl_map

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from popbox.transfer.sources import SourceItem


def source(*items: tuple[bytes, str | None]) -> list[SourceMessage]:
    return [
        SourceMessage(
            raw=raw, name=f"m{n}", number=n, uidl=uidl, received_at=1000.0 + n, retrieved=False
        )
        for n, (raw, uidl) in enumerate(items, 1)
    ]


async def uidls(store: MemoryStore, name: str = "alice") -> list[str]:
    return [info.uidl for info in await store.snapshot(name)]


@pytest.fixture
async def store() -> MemoryStore:
    opened = MemoryStore()
    await opened.add_user("alice", {})
    return opened


async def test_keep_uidl_keeps_them_and_new_mail_continues_above_c0009(store: MemoryStore) -> None:
    """C0009: imported messages keep their old unique-id strings; C0007/C0008: what is
    delivered later gets a decimal unique-id above every numeric one seen."""
    messages = source((b"S: a\n\na\n", "17"), (b"S: b\n\nb\n", "ab-3"), (b"S: c\n\nc\n", None))
    report = await run_import(store, "alice", lambda: iter(messages), ImportOptions(keep_uidl=True))
    assert (report.imported, report.kept_uidl, report.uids_above) == (3, 2, 17)
    listed = await uidls(store)
    assert listed[:2] == ["17", "ab-3"]
    assert int(listed[2]) > 17  # the message without one got a fresh number above
    later = await store.deliver("alice", prepare(b"S: new\n\n"))
    assert later.uid > int(listed[2])


async def test_without_keep_uidl_every_message_gets_a_new_id(store: MemoryStore) -> None:
    messages = source((b"S: a\n\n", "17"), (b"S: b\n\n", "x"))
    report = await run_import(store, "alice", lambda: iter(messages), ImportOptions())
    assert (report.kept_uidl, report.uids_above) == (0, 0)
    assert await uidls(store) == ["1", "2"]


async def test_invalid_repeated_and_taken_uidls_get_new_ones(store: MemoryStore) -> None:
    """RFC 1939 s7: unique-ids are unique in the maildrop and 1-70 chars in 0x21-0x7E."""
    await store.deliver("alice", prepare(b"S: existing\n\n"))  # shows "1"
    messages = source(
        (b"S: a\n\n", "has space"),
        (b"S: b\n\n", "dup"),
        (b"S: c\n\n", "dup"),
        (b"S: d\n\n", "1"),
    )
    report = await run_import(store, "alice", lambda: iter(messages), ImportOptions(keep_uidl=True))
    assert report.imported == 4
    assert len(report.problems) == 3
    listed = await uidls(store)
    assert len(set(listed)) == len(listed) == 5
    assert "dup" in listed
    assert "has space" not in listed


async def test_nul_message_is_reported_and_the_rest_imported_c0011(store: MemoryStore) -> None:
    """C0011: a NUL byte is refused explicitly, never silently altered."""
    messages = source((b"S: a\n\n\0\n", None), (b"S: b\n\nfine\n", None))
    report = await run_import(store, "alice", lambda: iter(messages), ImportOptions())
    assert report.imported == 1
    nul = NotImported("message 1 (m1)", "message contains a NUL byte at offset 6")
    assert report.not_imported == [nul]
    assert not report.problems
    assert not report.complete


async def test_unknown_user(store: MemoryStore) -> None:
    with pytest.raises(UnknownUser):
        await run_import(store, "nobody", lambda: iter(source()), ImportOptions())


class FailingStore(MemoryStore):
    """Fails the n-th import batch, as a crash or a full disk would, before committing."""

    def __init__(self, fail_batch: int) -> None:
        super().__init__()
        self.batches = 0
        self.fail_batch = fail_batch

    async def import_messages(self, name, messages, *, uids_above=0):  # type: ignore[no-untyped-def]
        self.batches += 1
        if self.batches == self.fail_batch:
            raise StoreTemporaryError("disk full")
        return await super().import_messages(name, messages, uids_above=uids_above)


@pytest.mark.parametrize("keep_uidl", [True, False])
async def test_interrupted_import_resumes_without_duplicates(keep_uidl: bool) -> None:
    """Running the same import again after a failure stores each message exactly once,
    identical messages included (their occurrence is part of the key)."""
    store = FailingStore(fail_batch=3)
    await store.add_user("alice", {})
    bodies = [(b"S: %d\n\n" % (n % 7), str(n + 1)) for n in range(50)]  # many identical ones
    messages = source(*bodies)
    options = ImportOptions(keep_uidl=keep_uidl, batch_messages=10)
    with pytest.raises(StoreTemporaryError):
        await run_import(store, "alice", lambda: iter(messages), options)
    assert len(await store.snapshot("alice")) == 20  # two whole batches, none of the third
    report = await run_import(store, "alice", lambda: iter(messages), options)
    assert (report.imported, report.already) == (30, 20)
    stored = await store.snapshot("alice")
    assert len(stored) == 50
    if keep_uidl:
        assert [info.uidl for info in stored] == [str(n + 1) for n in range(50)]
    again = await run_import(store, "alice", lambda: iter(messages), options)
    assert (again.imported, again.already) == (0, 50)


async def test_retrieved_messages_expire_as_retrieved_e0005(tmp_path: Path) -> None:
    """A Maildir message seen at the old server (S flag) counts as retrieved here."""
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1.seen:2,S").write_bytes(b"S: seen\n\n")
    (maildir / "new" / "2.unseen").write_bytes(b"S: unseen\n\n")
    store = MemoryStore()
    await store.add_user("alice", {})
    await run_import(store, "alice", lambda: read_maildir(maildir), ImportOptions())
    now = 2_000_000_000.0
    removed = await expire_all(store, RetentionConfig(retrieved_days=1), now)
    assert removed == {"alice": 1}
    [left] = await store.snapshot("alice")
    assert await store.fetch("alice", left.uid) == b"S: unseen\r\n\r\n"


async def test_mbox_export_and_reimport_round_trip_keeps_bytes_and_uidls(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.add_user("alice", {})
    await store.add_user("bob", {})
    raws = [b"S: a\r\n\r\nFrom the start\r\n>From quoted\r\n.dot\r\n", b"S: b\r\n\r\n\r\n"]
    await store.deliver("alice", prepare(raws[0]))
    await store.deliver("alice", prepare(raws[1], legacy_uidl="old-b"))
    path = tmp_path / "alice.mbox"
    report = await export_mbox(store, "alice", path)
    assert report.messages == 2
    uidl_map = read_uidl_map(tmp_path / "alice.mbox.uidl.csv")
    options = ImportOptions(keep_uidl=True, uidl_map=uidl_map)
    await run_import(store, "bob", lambda: read_mbox(path), options)
    assert await uidls(store, "bob") == await uidls(store, "alice") == ["1", "old-b"]
    for info, raw in zip(await store.snapshot("bob"), raws, strict=True):
        assert await store.fetch("bob", info.uid) == prepare(raw).wire


async def test_maildir_export_and_reimport_round_trip(tmp_path: Path) -> None:
    """The export's dovecot-uidlist carries each unique-id (P field) to the importer."""
    store = MemoryStore()
    await store.add_user("alice", {})
    await store.add_user("bob", {})
    for n in range(5):
        await store.deliver("alice", prepare(b"S: %d\r\n\r\nbody\r\n" % n, received_at=n))
    await export_maildir(store, "alice", tmp_path / "Maildir")
    await run_import(
        store, "bob", lambda: read_maildir(tmp_path / "Maildir"), ImportOptions(keep_uidl=True)
    )
    assert await uidls(store, "bob") == ["1", "2", "3", "4", "5"]
    bob = await store.snapshot("bob")
    assert [info.received_at for info in bob] == [0, 1, 2, 3, 4]
    for info in bob:
        wire = await store.fetch("bob", info.uid)
        assert wire == normalise(b"S: %d\r\n\r\nbody\r\n" % (info.received_at,))


def test_source_iterators_are_restartable(tmp_path: Path) -> None:
    """The importer reads a source twice (count, then import): each call starts over."""
    path = tmp_path / "x.mbox"
    path.write_bytes(b"From a Sat Jan  3 01:05:34 2026\nS: x\n\n")

    def fresh() -> Iterator[SourceItem]:
        return read_mbox(path)

    assert list(fresh()) == list(fresh())
