"""An MTA's retry of a delivery that did commit is recognised, not stored twice.

RFC 5321 s4.5.4.1: a client that gets no reply (or a 4xx) retries the message later.
When the reply was lost after the message was stored, or the store could not learn its
commit's outcome and answered 451, the retry carries the same content to the same
mailbox: popbox records a delivery key (mailbox and content digest) in the delivery's
transaction and, within ``[lmtp] dedup_window`` seconds, answers the retry with the
first copy's uid (issue 15 item 2).  A different message, or the same one after the
window, is a new delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_lmtp import MESSAGE, lmtp, stored
from test_mda import add_users, deliver, messages, write_config

from mailserver import MailServer, lmtp_transaction

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path)
    running.add_user("alice")
    running.add_user("bob")
    yield running
    running.stop()


def test_lmtp_retry_of_a_stored_message_is_acknowledged_with_the_first_copy(
    server: MailServer,
) -> None:
    _, first = lmtp_transaction(lmtp(server), ["alice@example.com", "bob"], MESSAGE)
    _, again = lmtp_transaction(lmtp(server), ["alice", "bob"], MESSAGE)
    assert first == [
        "250 2.1.5 <alice@example.com> delivered as message 1",
        "250 2.1.5 <bob> delivered as message 1",
    ]
    assert again == [
        "250 2.1.5 <alice> delivered as message 1",
        "250 2.1.5 <bob> delivered as message 1",
    ]
    assert len(stored(server, "alice")) == len(stored(server, "bob")) == 1
    other = MESSAGE.replace(b"Hello Alice", b"Hello again")
    _, new = lmtp_transaction(lmtp(server), ["alice"], other)
    assert new == ["250 2.1.5 <alice> delivered as message 2"]


def test_lmtp_stores_every_copy_with_the_window_off(tmp_path: Path) -> None:
    running = MailServer(tmp_path, lmtp={"dedup_window": 0})
    try:
        running.add_user("alice")
        for _ in range(2):
            lmtp_transaction(lmtp(running), ["alice"], MESSAGE)
        assert len(stored(running, "alice")) == 2
    finally:
        running.stop()


def test_popbox_deliver_run_twice_stores_one_copy(tmp_path: Path) -> None:
    """An MDA pipe the MTA runs again (its exit status was lost): exit 0, one copy."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    for _ in range(2):
        done = deliver(config, "alice")
        assert done.returncode == 0, done.stderr
        assert b"delivered to alice as uid 1" in done.stdout
    assert len(messages(tmp_path, "alice")) == 1
