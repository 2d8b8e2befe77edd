"""The per-state data of a POP3 session (internal to ``Pop3Connection``).

Data that exists in one state only lives in that state's object (the USER name before
PASS, the maildrop after login), never in optional attributes of the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

# Imported to run, not only for mypy: the compiled build reads the Maildrop class when it
# builds Transaction's dataclass annotations, and crashes if maildrop is not loaded yet.
from popbox.protocol.maildrop import Maildrop  # noqa: TC001
from popbox.protocol.states import ALLOWED, State
from popbox.protocol.values import Value

if TYPE_CHECKING:
    from popbox.protocol.commands import Command
    from popbox.protocol.events import CommandRecord, Event

__all__ = [
    "ALLOWED_IN",
    "STATE_OF",
    "Authorization",
    "Awaiting",
    "Closed",
    "Counters",
    "Phase",
    "Sasl",
    "Transaction",
]


@dataclass(slots=True)
class Authorization:
    pending_user: str | None = None
    name_valid: bool = True  # False: USER's argument cannot name a mailbox (V0008)


@dataclass(slots=True)
class Sasl:
    mechanism: str


@dataclass(slots=True)
class Transaction:
    user: str
    maildrop: Maildrop
    # Full LIST and UIDL replies, built once and kept until DELE or RSET changes them: a
    # client repeating them (or pipelining thousands) costs a lookup each, not a listing.
    listings: dict[type, bytes] = field(default_factory=dict)


class Awaiting(Value):
    """Waiting for the I/O layer's answer to an event; holds what the answer needs.

    Built for every RETR and TOP, hence a ``Value``; answering replaces it, never edits it.
    """

    __slots__ = ("event", "resume")
    __match_args__ = ("event", "resume")
    event: Final[Event]
    resume: Final[Authorization | Sasl | Transaction]

    def __init__(self, event: Event, resume: Authorization | Sasl | Transaction) -> None:
        self.event = event
        self.resume = resume


@dataclass(slots=True)
class Closed:
    pass


Phase = Authorization | Sasl | Transaction | Awaiting | Closed


@dataclass(slots=True)
class Counters:
    bad_commands: int = 0
    auth_failures: int = 0
    lines: int = 0  # complete lines received; the I/O layer resets its timer on change
    output: list[bytes] = field(default_factory=list)
    queued: int = 0  # octets in ``output``
    records: list[CommandRecord] = field(default_factory=list)
    verb: str | None = None  # the command being answered, until its status line


# What _command_line may meet: the phases a command line is read in (C0002/C0003).
ALLOWED_IN: dict[type, frozenset[type[Command]]] = {
    Authorization: ALLOWED[State.AUTHORIZATION],
    Transaction: ALLOWED[State.TRANSACTION],
}

STATE_OF: dict[type, State] = {
    Authorization: State.AUTHORIZATION,
    Sasl: State.SASL,
    Transaction: State.TRANSACTION,
    Closed: State.CLOSED,
}
