"""The mailbox of a directory's user, made at its first login or delivery."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from popbox.store.base import UserExists

if TYPE_CHECKING:
    from popbox.directory.base import Account
    from popbox.store.base import MailStore

__all__ = ["ensure_mailbox"]


async def ensure_mailbox(store: MailStore, account: Account) -> None:
    """Make sure ``account``'s mailbox exists, with the directory's quota when it has one.

    The mailbox is a users row without verifiers: it holds mail, and the internal
    directory does not take it for a user with a password.  A quota the directory stops
    giving is left as it was (an administrator may have set one).  Raises ``StoreError``.
    Read as a login reads the internal directory's users (``find_user``): on PostgreSQL
    a directory's user who logs in again costs no round trip here.
    """
    record = await store.find_user(account.mailbox)
    if record is None:
        with contextlib.suppress(UserExists):  # another login or delivery made it first
            await store.add_user(account.mailbox, {}, account.quota_bytes)
    elif account.quota_bytes is not None and record.quota != account.quota_bytes:
        await store.set_quota(account.mailbox, account.quota_bytes)
