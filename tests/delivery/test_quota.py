"""Quotas (E0003, E0004): the effective limit, refusals over LMTP, the one warning."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from mailserver import LmtpClient, MailServer, lmtp_transaction
from popbox.config import ConfigError, QuotaConfig, from_mapping
from popbox.delivery.agent import DeliveryAgent
from popbox.delivery.quota import effective_quota, warning_threshold
from popbox.store.base import DeliveryRefused, RefusalReason, UserRecord
from popbox.store.memory import MemoryStore
from popbox.store.message import prepare

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BODY = b"Subject: filler\r\n\r\n" + b"x" * 979 + b"\r\n"  # 1000 octets as stored
assert len(BODY) == 1000


def test_effective_quota_is_own_else_server_default_e0003() -> None:
    """E0003: "Each user mailbox has a storage quota that is inherited from the storage
    database configuration. Storage quotas for each mailbox can be changed"."""
    default = QuotaConfig(default_quota=5000)
    assert effective_quota(UserRecord("a", {}, None), default) == 5000
    assert effective_quota(UserRecord("a", {}, 9000), default) == 9000
    assert effective_quota(UserRecord("a", {}, None), QuotaConfig()) is None
    assert warning_threshold(1000, QuotaConfig(warning_percent=90)) == 900
    assert warning_threshold(1001, QuotaConfig(warning_percent=90)) == 901  # rounded up


def test_quota_settings_are_validated_naming_the_key() -> None:
    assert from_mapping({"quota": {"default_quota": 10}}).quota.default_quota == 10
    with pytest.raises(ConfigError, match=r"quota\.warning_percent"):
        from_mapping({"quota": {"warning_percent": 0}})
    with pytest.raises(ConfigError, match=r"quota\.default_quota"):
        from_mapping({"quota": {"default_quota": -1}})
    with pytest.raises(ConfigError, match=r"lmtp\.over_quota"):
        from_mapping({"lmtp": {"over_quota": "bounce"}})


async def warnings_in(store: MemoryStore, name: str) -> list[bytes]:
    found = []
    for info in await store.snapshot(name):
        wire = await store.fetch(name, info.uid) or b""
        if b"Auto-Submitted: auto-generated" in wire:
            found.append(wire)
    return found


async def test_crossing_the_threshold_sends_one_warning_e0004() -> None:
    """E0004: "inform users of impending or current exhaustion of quota, perhaps by
    inserting an appropriate message into the user's maildrop" - once per crossing."""
    store = MemoryStore()
    await store.add_user("alice", {}, quota=10_000)
    agent = DeliveryAgent(store, QuotaConfig(warning_percent=50), hostname="mx.test")
    for _ in range(4):  # 4000 of 10000: below 50 %
        await agent.deliver("alice", prepare(BODY))
    assert await warnings_in(store, "alice") == []
    await agent.deliver("alice", prepare(BODY))  # 5000: crosses
    [warning] = await warnings_in(store, "alice")
    assert b"Subject: Your mailbox is 50% full\r\n" in warning
    assert b"From: Mail Delivery System <postmaster@mx.test>\r\n" in warning
    await agent.deliver("alice", prepare(BODY))  # still above: no second warning
    assert len(await warnings_in(store, "alice")) == 1

    # The user makes room; the next delivery that crosses again warns again.
    uids = [info.uid for info in await store.snapshot("alice")]
    await store.delete("alice", uids)
    for _ in range(4):
        await agent.deliver("alice", prepare(BODY))
    assert await warnings_in(store, "alice") == []
    await agent.deliver("alice", prepare(BODY))
    assert len(await warnings_in(store, "alice")) == 1


async def test_drop_below_then_jump_above_warns_again_e0004() -> None:
    """A single delivery that takes usage from below to above the threshold warns, even
    if the flag is still set from an earlier crossing (nothing cleared it in between)."""
    store = MemoryStore()
    await store.add_user("alice", {}, quota=4000)
    agent = DeliveryAgent(store, QuotaConfig(warning_percent=50), hostname="mx.test")
    await agent.deliver("alice", prepare(BODY * 2))  # 2000: crosses, warns
    assert len(await warnings_in(store, "alice")) == 1
    await store.delete("alice", [info.uid for info in await store.snapshot("alice")])
    await agent.deliver("alice", prepare(BODY * 2))  # 0 -> 2000 in one step
    assert len(await warnings_in(store, "alice")) == 1  # the old one was deleted too


async def test_concurrent_deliveries_crossing_together_warn_once_e0004() -> None:
    store = MemoryStore()
    await store.add_user("alice", {}, quota=10_000)
    agent = DeliveryAgent(store, QuotaConfig(warning_percent=50), hostname="mx.test")
    await asyncio.gather(*(agent.deliver("alice", prepare(BODY)) for _ in range(8)))
    assert len(await warnings_in(store, "alice")) == 1


async def test_over_quota_is_refused_whole_and_nothing_changes_e0004() -> None:
    """E0004: delivery over quota is refused with a clear error and nothing is lost."""
    store = MemoryStore()
    await store.add_user("alice", {})
    agent = DeliveryAgent(store, QuotaConfig(default_quota=2500), hostname="mx.test")
    await agent.deliver("alice", prepare(BODY))
    await agent.deliver("alice", prepare(BODY))
    before = await store.snapshot("alice")
    with pytest.raises(DeliveryRefused) as refused:
        await agent.deliver("alice", prepare(BODY))
    assert refused.value.reason is RefusalReason.OVER_QUOTA
    assert "over quota" in str(refused.value)
    assert await store.snapshot("alice") == before
    await store.set_quota("alice", 3000)  # the user's own quota overrides the default
    await agent.deliver("alice", prepare(BODY))


@pytest.fixture
def quota_server(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path, quota={"default_quota": 2500})
    running.add_user("alice")
    running.add_user("bob", quota=100_000)
    yield running
    running.stop()


def test_over_quota_per_recipient_after_data_is_452_4_2_2(quota_server: MailServer) -> None:
    """RFC 2033 s4.2: each recipient gets its own status; a full mailbox is a temporary
    failure (RFC 3463 4.2.2) so the MTA keeps the message for it, bob still gets his."""
    address = ("127.0.0.1", quota_server.port("lmtp"))
    lmtp_transaction(address, ["alice"], BODY)
    rcpt, data = lmtp_transaction(address, ["alice", "bob"], BODY * 2)
    assert rcpt[0].startswith("250")  # room left at RCPT time; the data does not fit
    assert data[0] == "452 4.2.2 <alice>: mailbox is full, try again later"
    assert data[1].startswith("250 2.1.5 <bob>")
    assert len(quota_server.call(quota_server.store.snapshot("alice"))) == 1


def test_declared_size_over_quota_refused_at_rcpt(quota_server: MailServer) -> None:
    """RFC 1870: with SIZE declared, a recipient without room is refused at RCPT."""
    address = ("127.0.0.1", quota_server.port("lmtp"))
    rcpt, data = lmtp_transaction(address, ["alice", "bob"], BODY, mail_params=" SIZE=3000")
    assert rcpt[0] == "452 4.2.2 <alice>: mailbox is full, try again later"
    assert len(data) == 1
    assert data[0].startswith("250 2.1.5 <bob>")


def test_permanent_over_quota_setting_gives_552_5_2_2(tmp_path: Path) -> None:
    """[lmtp] over_quota = "permanent": RFC 3463 5.2.2, the MTA bounces at once."""
    running = MailServer(tmp_path, lmtp={"over_quota": "permanent"}, quota={"default_quota": 10})
    try:
        running.add_user("alice")
        address = ("127.0.0.1", running.port("lmtp"))
        _, data = lmtp_transaction(address, ["alice"], BODY)
        assert data == ["552 5.2.2 <alice>: mailbox is full"]
        rcpt, _ = lmtp_transaction(address, ["alice"], BODY, mail_params=" SIZE=100")
        assert rcpt == ["552 5.2.2 <alice>: mailbox is full"]
    finally:
        running.stop()


def test_size_limit_is_552_5_3_4_at_mail_and_after_data(tmp_path: Path) -> None:
    """RFC 1870 / RFC 3463 5.3.4: a declared size over the limit is refused at MAIL; an
    undeclared one after the data, once per recipient, and nothing is stored."""
    running = MailServer(tmp_path, lmtp={"max_message_size": 1500})
    try:
        running.add_user("alice")
        running.add_user("bob")
        address = ("127.0.0.1", running.port("lmtp"))
        client = LmtpClient(address)
        try:
            client.command("LHLO client.test")
            reply = client.command("MAIL FROM:<a@example.org> SIZE=2000")
            assert reply == "552 5.3.4 message exceeds the maximum size of 1500 octets"
        finally:
            client.close()
        _, data = lmtp_transaction(address, ["alice", "bob"], BODY * 2)
        assert data == ["552 5.3.4 message exceeds the maximum size of 1500 octets"] * 2
        assert running.call(running.store.snapshot("alice")) == []
        _, data = lmtp_transaction(address, ["alice"], BODY)
        assert data[0].startswith("250 ")
    finally:
        running.stop()
