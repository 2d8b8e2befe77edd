"""A session's lifecycle as one explicit state: an enum and the transitions allowed.

Compare h11's ``ConnectionState``: the session (``server/session.py``) is always in
exactly one ``Stage``, moves only along ``TRANSITIONS``, and a move the table does not
allow is a bug raised at once rather than a combination of flags nobody planned for.
How fast output drains (transport flow control) and whether a command is being answered
in a task are not stages: they change many times within one stage.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "Stage", "StageError", "check_transition"]


class Stage(enum.Enum):
    GREETING = "greeting"  # made; connection_made writes the greeting
    SERVING = "serving"  # reading commands and answering them in order
    UPGRADING = "upgrading"  # STLS accepted: plaintext is dropped until TLS is up (RFC 2595 s4)
    HALF_CLOSED = "half_closed"  # the client sent EOF: what it sent is answered, then close
    # The connection is gone: what was buffered is still answered (a pipelined QUIT still
    # enters UPDATE, RFC 1939 s6), and nothing is written.
    LOST = "lost"
    DRAINING = "draining"  # the server stops: the current command is answered, -ERR, close
    CLOSING = "closing"  # the lock is released, the last replies drain, the socket closes
    CLOSED = "closed"


TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.GREETING: frozenset({Stage.SERVING}),
    Stage.SERVING: frozenset(
        {Stage.UPGRADING, Stage.HALF_CLOSED, Stage.LOST, Stage.DRAINING, Stage.CLOSING}
    ),
    Stage.UPGRADING: frozenset(
        {Stage.SERVING, Stage.HALF_CLOSED, Stage.LOST, Stage.DRAINING, Stage.CLOSING}
    ),
    Stage.HALF_CLOSED: frozenset({Stage.LOST, Stage.CLOSING}),
    Stage.LOST: frozenset({Stage.CLOSING}),
    # An EOF during the drain: the client is answered as any half-closed one is.
    Stage.DRAINING: frozenset({Stage.HALF_CLOSED, Stage.LOST, Stage.CLOSING}),
    Stage.CLOSING: frozenset({Stage.CLOSED}),
    Stage.CLOSED: frozenset(),
}

# Stages whose commands are still read and answered; in the others the session is ending.
ANSWERING = frozenset(
    {Stage.SERVING, Stage.UPGRADING, Stage.HALF_CLOSED, Stage.LOST, Stage.DRAINING}
)


class StageError(RuntimeError):
    """A transition the table does not allow: a bug in the session, never the client's."""


def check_transition(current: Stage, target: Stage) -> Stage:
    """``target`` if the table allows moving there from ``current``; raises otherwise."""
    if target not in TRANSITIONS[current]:
        raise StageError(f"session cannot go from {current.value} to {target.value}")
    return target
