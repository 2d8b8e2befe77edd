"""``MessageInfo``: what a login snapshot holds of one message.

A leaf module (it imports nothing of popbox's) because two layers speak it: the stores
build one per message at login (``MailStore.snapshot``, re-exported by
``popbox.store.base``), and the protocol core numbers them into a maildrop
(``protocol/maildrop.py``), which may import nothing beyond the standard library.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MessageInfo"]


class MessageInfo(NamedTuple):
    """What a login snapshot needs of one message; never includes the body.

    A named tuple rather than a dataclass: a login builds one per message, and a tuple
    is built from a database row in a sixth of the time.
    """

    uid: int  # the mailbox counter's value for this message: decimal, increasing (C0007)
    size: int  # exact RFC 822 size: CRLF line ends, before dot-stuffing (2.1.4, 2.1.5)
    stored_size: int  # octets the wire form occupies in storage (Exchange's default size)
    received_at: float  # POSIX seconds
    legacy_uidl: str | None = None  # an imported message's unique-id from its old server

    @property
    def uidl(self) -> str:
        """The unique-id UIDL shows: the legacy string if imported with one, else the uid."""
        return self.legacy_uidl if self.legacy_uidl is not None else str(self.uid)
