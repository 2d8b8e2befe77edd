"""This process's copy of user records, forgotten by LISTEN/NOTIFY when one changes.

Theory of operation: a login on PostgreSQL made two round trips, the user's record and
the maildrop's snapshot, and the first was about a quarter of the login's CPU on both
sides (measured with bench/).  The snapshot cannot come earlier (it would let anyone
make the server read a whole listing per guessed password), but the record rarely
changes.  So the login path (``PostgresStore.find_user``) keeps what it read here, the
record or that there is no such user, and a trigger on ``users`` (migration 0009)
notifies ``CHANNEL`` with the user's name whenever a row is added, has its name,
verifiers, quota or disabled reason updated, or is deleted: the notification is
delivered when that change commits, and what was kept of the name is forgotten.
Deliveries, which update the row's uid counter, notify nothing.  Unknown names are kept
too so that a login for one takes as long as a login for a user that is kept: the time
of a failed login must not tell whether the user exists.

The copy is used only while it is *live*, which ``ScoresCopy``
(``postgres_scores_copy.py``) decides: its listening connection, the one it keeps for
the lockouts, listens on ``CHANNEL`` too, and the copy starts empty each time that
connection has been made (``begin``) and is emptied when it is lost or its server is
found in recovery (``end``).  A record is kept only if nothing was heard between the
moment its read was sent and its answer (``ticket`` and ``keep``): a change that
commits meanwhile may or may not be in the answer, so the answer is used once and not
kept.  A login that races a change's notification is answered as one that read the row
a moment before the change committed would have been.

Only the login path reads through the copy: a password upgrade, the SASL mechanisms
that read stored secrets and every administrative command read the table
(``get_user``).  The copy holds at most ``HELD`` records, the least recently used
forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popbox.store.base import UserRecord

__all__ = ["CHANNEL", "HELD", "AccountsCopy"]

CHANNEL = "popbox_users"
# Records kept per process: a few hundred octets each (the verifiers are most of it).
HELD = 10_000


class AccountsCopy:
    """User records by name, usable while ``live``; see the module's docstring."""

    __slots__ = ("_heard", "_limit", "_records", "live")

    def __init__(self, limit: int = HELD) -> None:
        self._limit = limit
        # None: no such user.
        self._records: OrderedDict[str, UserRecord | None] = OrderedDict()
        self._heard = 0  # notifications, begins and ends so far: ``ticket``
        self.live = False

    def __len__(self) -> int:
        return len(self._records)

    def begin(self) -> None:
        """The listening connection hears every change from now on: start empty."""
        self._forget_all()
        self.live = True

    def end(self) -> None:
        """The listening connection is gone or on a standby: forget, read the table."""
        self.live = False
        self._forget_all()

    def heard(self, name: str) -> None:
        """A notification: ``name``'s row changed or is gone."""
        self._heard += 1
        self._records.pop(name, None)

    def get(self, name: str) -> tuple[bool, UserRecord | None]:
        """(kept, ``name``'s record or None for no such user); not kept: read the table."""
        if not self.live or name not in self._records:
            return False, None
        self._records.move_to_end(name)
        return True, self._records[name]

    def ticket(self) -> int:
        """Taken before a read is sent; ``keep`` needs it."""
        return self._heard

    def keep(self, name: str, record: UserRecord | None, ticket: int) -> None:
        """Keep what was read of ``name`` if nothing was heard since ``ticket``."""
        if not self.live or ticket != self._heard:
            return
        self._records[name] = record
        self._records.move_to_end(name)
        while len(self._records) > self._limit:
            self._records.popitem(last=False)

    def _forget_all(self) -> None:
        self._heard += 1
        self._records.clear()
