"""Importing from sources that fail: nothing lost, nothing twice, order kept (C0009).

Against ``fake_pop3.FakeSource`` (misbehaviour on demand) into a real SQLite store:
a connection dropped at a random RETR, ``-ERR`` to a RETR, repeated and invalid
unique-ids (RFC 1939 s7), a source without UIDL, a message over max_message_size.
Every run must end with the mailbox holding exactly the source, in its order.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from fake_pop3 import FakeSource
from popbox.config import QuotaConfig
from popbox.store import open_store
from popbox.store.message import unstuff
from popbox.transfer.pop3_client import Credentials, Pop3Url, SourceError, tls_context
from popbox.transfer.pop3_import import Pop3Import, Pop3Source, import_pop3

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from popbox.store.base import MailStore


def message(n: int, headers: str | None = None) -> bytes:
    head = headers if headers is not None else f"Subject: message {n}\r\n"
    return f"{head}\r\n.line {n}\r\nbody {n}\r\n".encode()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    opened = open_store("sqlite", data_dir=tmp_path, dsn="")
    await opened.open()
    await opened.add_user("alice", {})
    yield opened
    await opened.close()


async def run(
    store: MailStore,
    source: FakeSource,
    options: Pop3Import | None = None,
    *,
    allow_plaintext: bool = True,
):
    pop3 = Pop3Source(
        Pop3Url.parse(source.url),
        Credentials("alice", "secret", auth="user"),
        tls_context(None, insecure=False),
        allow_plaintext=allow_plaintext,
        timeout=5.0,
    )
    return await import_pop3(store, "alice", pop3, options or Pop3Import())


async def mailbox(store: MailStore) -> list[tuple[str, bytes]]:
    shown = []
    for info in await store.snapshot("alice"):
        wire = await store.fetch("alice", info.uid)
        assert wire is not None
        shown.append((info.uidl, unstuff(wire)))
    return shown


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_connection_dropped_at_a_random_retr_resumes_to_exactly_the_source(
    store: MailStore, seed: int
) -> None:
    messages = [(f"uid-{n:04d}".encode(), message(n)) for n in range(1, 61)]
    drop = random.Random(seed).randint(1, 60)  # noqa: S311 - a test's choice, not a secret
    source = await FakeSource(messages, drop_at_retr={drop}).start()
    try:
        first = await run(store, source, Pop3Import(batch_messages=7))
        assert first.stopped is not None
        assert f"RETR {drop}" in first.stopped
        assert not first.complete
        assert first.imported == drop - 1  # everything retrieved before the drop is kept
        source.commands.clear()
        second = await run(store, source)
    finally:
        await source.stop()
    assert second.complete, second.problems
    assert (second.imported, second.already) == (61 - drop, drop - 1)
    retrieved = [c for c in source.commands if c.startswith("RETR")]
    assert retrieved[0] == f"RETR {drop}"  # what was imported is not even retrieved again
    assert not any(c.startswith("DELE") for c in source.commands)  # read-only at the source
    assert await mailbox(store) == [(u.decode(), m) for u, m in messages]


async def test_err_to_retr_stops_the_run_and_the_next_continues_in_order(
    store: MailStore,
) -> None:
    messages = [(f"u{n}".encode(), message(n)) for n in range(1, 11)]
    source = await FakeSource(messages, err_at_retr={4}).start()
    try:
        first = await run(store, source)
        second = await run(store, source)
    finally:
        await source.stop()
    assert first.stopped is not None
    assert "-ERR to RETR 4" in first.stopped
    assert first.imported == 3
    assert second.complete
    assert await mailbox(store) == [(u.decode(), m) for u, m in messages]


async def test_repeated_and_invalid_uidls_are_reported_by_number_and_given_new_ones(
    store: MailStore,
) -> None:
    """RFC 1939 s7: 1 to 70 octets in 0x21..0x7E, unique; the rule in pop3_listing."""
    same = "Subject: same\r\n"
    messages = [
        (b"dup", message(1)),
        (b"dup", message(2)),
        (b"x" * 71, message(3)),
        (b"", message(4)),
        (b"bad\xffid", message(5)),
        (None, message(6, same)),
        (None, message(7, same)),  # the same header section: told apart by occurrence
        (b"ok-8", message(8)),
    ]
    source = await FakeSource(messages).start()
    try:
        first = await run(store, source)
        again = await run(store, source)
    finally:
        await source.stop()
    problems = "\n".join(first.problems)
    assert "message 2: unique-id 'dup' repeats message 1's" in problems
    assert "message 3:" in problems
    assert "(71 octets)" in problems
    assert "message 4:" in problems
    assert "message 5:" in problems
    assert "message 6: not in the UIDL answer" in problems
    assert (first.imported, first.kept_uidl) == (8, 2)
    assert first.complete
    shown = await mailbox(store)
    assert [body for _, body in shown] == [m for _, m in messages]
    assert shown[0][0] == "dup"
    assert shown[7][0] == "ok-8"
    assert len({uidl for uidl, _ in shown}) == 8  # every unique-id unique (C0007)
    assert (again.imported, again.already) == (0, 8)  # keys: nothing stored twice


async def test_source_without_uidl_imports_once_by_header_hash(store: MailStore) -> None:
    messages = [(None, message(n)) for n in range(1, 6)]
    source = await FakeSource(messages, uidl=False).start()
    try:
        first = await run(store, source)
        again = await run(store, source)
    finally:
        await source.stop()
    assert first.no_uidl
    assert (first.imported, again.imported, again.already) == (5, 0, 5)
    assert [body for _, body in await mailbox(store)] == [m for _, m in messages]


async def test_message_over_max_message_size_is_not_retrieved(store: MailStore) -> None:
    messages = [(b"a", message(1)), (b"b", message(2) + b"x" * 5000 + b"\r\n")]
    source = await FakeSource(messages).start()
    try:
        report = await run(store, source, Pop3Import(max_message_size=1000))
    finally:
        await source.stop()
    assert not report.complete
    assert "message 2:" in report.problems[0]
    assert "over max_message_size" in report.problems[0]
    assert "RETR 2" not in source.commands
    assert [uidl for uidl, _ in await mailbox(store)] == ["a"]


async def test_pop3_url_without_stls_is_refused_unless_plaintext_is_allowed(
    store: MailStore,
) -> None:
    """RFC 2595: the password goes over TLS, or only when the operator says so."""
    source = await FakeSource([(b"a", message(1))]).start()
    try:
        with pytest.raises(SourceError, match="does not offer STLS: use pop3s://"):
            await run(store, source, allow_plaintext=False)
        assert not any(c.startswith(("USER", "PASS")) for c in source.commands)
    finally:
        await source.stop()


@pytest.mark.parametrize(
    "answer",
    [b"+OK\r\nnot-a-number uid\r\n.\r\n", b"+OK\r\n1 a\r\n2 b\r\n"],
    ids=["bad line", "no terminator"],
)
async def test_malformed_uidl_answer_is_named_and_nothing_is_stored(
    store: MailStore, answer: bytes
) -> None:
    source = await FakeSource([(b"a", message(1))], uidl_answer=answer).start()
    try:
        with pytest.raises(SourceError, match="UIDL"):
            await run(store, source)
    finally:
        await source.stop()
    assert await store.snapshot("alice") == []


async def test_quota_reached_mid_import_stops_the_user_cleanly_e0003(store: MailStore) -> None:
    messages = [(f"q{n}".encode(), message(n)) for n in range(1, 11)]
    await store.set_quota("alice", 3 * len(message(1)) + 5)  # room for three
    source = await FakeSource(messages).start()
    try:
        limited = await run(store, source, Pop3Import(quota=QuotaConfig()))
        ignored = await run(store, source)  # no QuotaConfig: the operator said --ignore-quota
    finally:
        await source.stop()
    assert limited.stopped is not None
    assert "quota is reached: message 4" in limited.stopped
    assert (limited.imported, limited.complete) == (3, False)
    assert (ignored.imported, ignored.already, ignored.complete) == (7, 3, True)
    assert await mailbox(store) == [(u.decode(), m) for u, m in messages]
