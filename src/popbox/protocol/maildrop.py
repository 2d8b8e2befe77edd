"""The maildrop snapshot a session works on (C0004) and the message-number rules.

The snapshot is taken once at login: message numbers, sizes and unique-ids stay fixed
for the session whatever other sessions or deliveries do.  DELE only marks; RSET
clears the marks; storage changes only in UPDATE (RFC 1939 section 6).  This class is
the only place that turns a 1-based message number into a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol.replies import Err

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from popbox.protocol.message_info import MessageInfo

__all__ = ["Maildrop", "estimated_size"]

# The estimate's model (2.1.4, 2.1.5).  Exchange reports "the amount of storage the message
# actually occupies" unless EnableExactRFC822Size is on; how it computes that is not
# published.  popbox's stand-in behaves as a store estimate does for a client: computed
# from what was stored at delivery (never the body), the same in every session, and
# never the octet count RETR sends.  Stored size (wire form, dot-stuffed), plus 1/32 of it
# for headers a store keeps twice (as properties and as the raw header block), plus a
# fixed 384 octets of per-message properties.  The constants are popbox's, not Exchange's.
ESTIMATE_FIXED_OVERHEAD = 384
ESTIMATE_SHARE = 32


def estimated_size(info: MessageInfo) -> int:
    """The size STAT and LIST report with ``exact_rfc822_size = false``."""
    return info.stored_size + info.stored_size // ESTIMATE_SHARE + ESTIMATE_FIXED_OVERHEAD


class Maildrop:
    __slots__ = ("_deleted", "_deleted_size", "_exact_size", "_messages", "_retrieved", "_size")

    def __init__(
        self,
        messages: Sequence[MessageInfo],
        *,
        exact_size: bool = True,
        newest_first: bool = False,
    ) -> None:
        # Set-PopSettings MessageRetrievalSortOrder Descending: message 1 is the newest.
        self._messages = tuple(reversed(messages)) if newest_first else tuple(messages)
        self._exact_size = exact_size  # 2.1.4/2.1.5: exact RFC 822 size, or the estimate
        self._deleted: set[int] = set()  # message numbers marked by DELE
        self._retrieved: set[int] = set()  # message numbers sent by RETR
        # STAT's figures kept up to date, not summed per STAT: the login's +OK, STAT and
        # RSET all need them, and a maildrop may hold tens of thousands of messages.
        self._size = sum(self.size_of(info) for info in self._messages)
        self._deleted_size = 0

    def size_of(self, info: MessageInfo) -> int:
        return info.size if self._exact_size else estimated_size(info)

    def get(self, msg: int) -> MessageInfo | Err:
        """The message numbered ``msg``, or the -ERR that explains why there is none."""
        if msg > len(self._messages):
            count = len(self._messages)
            return Err(f"no message {msg}: the maildrop has {count} message{'s' * (count != 1)}")
        if msg in self._deleted:
            return Err(f"message {msg} is marked as deleted")
        return self._messages[msg - 1]

    def live(self) -> Iterator[tuple[int, MessageInfo]]:
        """(message number, message) for every message not marked as deleted."""
        deleted = self._deleted
        return ((n, info) for n, info in enumerate(self._messages, 1) if n not in deleted)

    def stat(self) -> tuple[int, int]:
        """Count and total size of the messages not marked as deleted."""
        return len(self._messages) - len(self._deleted), self._size - self._deleted_size

    def delete(self, msg: int) -> MessageInfo | Err:
        info = self.get(msg)
        if not isinstance(info, Err):
            self._deleted.add(msg)
            self._deleted_size += self.size_of(info)
        return info

    def mark_retrieved(self, msg: int) -> None:
        self._retrieved.add(msg)

    def reset(self) -> None:
        self._deleted.clear()
        self._deleted_size = 0

    def deleted_uids(self) -> tuple[int, ...]:
        return tuple(self._messages[n - 1].uid for n in sorted(self._deleted))

    def retrieved_uids(self) -> tuple[int, ...]:
        return tuple(self._messages[n - 1].uid for n in sorted(self._retrieved - self._deleted))
