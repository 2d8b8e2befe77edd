"""The per-state data of a POP3 session (internal to ``Pop3Connection``).

Data that exists in one state only lives in that state's object (the USER name before
PASS, the maildrop after login), never in optional attributes of the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NoReturn

from popbox.protocol.events import Update

# Imported to run, not only for mypy: the compiled build reads the Maildrop class when it
# builds Transaction's dataclass annotations, and crashes if maildrop is not loaded yet.
from popbox.protocol.maildrop import Maildrop  # noqa: TC001
from popbox.protocol.states import ALLOWED, State
from popbox.protocol.values import Value

if TYPE_CHECKING:
    from popbox.protocol.commands import Command
    from popbox.protocol.events import Event

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
    "expect",
    "state_of",
    "unanswered",
    "user_of",
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


def state_of(phase: Phase) -> State:
    """The RFC 1939 state a phase is in; waiting for UPDATE's answer is UPDATE."""
    if isinstance(phase, Awaiting):
        if isinstance(phase.event, Update):
            return State.UPDATE
        phase = phase.resume
    return STATE_OF[type(phase)]


def user_of(phase: Phase) -> str | None:
    """The logged-in user, once in TRANSACTION."""
    phase = phase.resume if isinstance(phase, Awaiting) else phase
    return phase.user if isinstance(phase, Transaction) else None


def expect(phase: Phase, *kinds: type) -> Awaiting:
    """The phase waiting for an answer to one of ``kinds``; anything else is the I/O
    layer's bug (an answer to an event it was not given), never the client's."""
    if not isinstance(phase, Awaiting) or not isinstance(phase.event, kinds):
        msg = f"no pending {' or '.join(k.__name__ for k in kinds)} to answer"
        raise RuntimeError(msg)  # noqa: TRY004 - a bug in the I/O layer, never client-triggered
    return phase


def unanswered(phase: Phase) -> NoReturn:
    """``next_event`` was called with an event still unanswered: the I/O layer's bug."""
    assert isinstance(phase, Awaiting)
    msg = f"answer {type(phase.event).__name__} before asking for the next event"
    raise RuntimeError(msg)
