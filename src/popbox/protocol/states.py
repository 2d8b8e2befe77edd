"""The POP3 session states (RFC 1939 sections 3-6) and the commands each accepts."""

from __future__ import annotations

import enum

from popbox.protocol.commands import (
    Auth,
    Capa,
    Command,
    Dele,
    Lang,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)

__all__ = ["ALLOWED", "State"]


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    SASL = "sasl"  # mid-exchange; only a continuation line or "*" is accepted
    TRANSACTION = "transaction"
    UPDATE = "update"  # entered only by QUIT from TRANSACTION (RFC 1939 section 6)
    CLOSED = "closed"


# C0002/C0003: before login only identification and session commands are accepted.
ALLOWED: dict[State, frozenset[type[Command]]] = {
    # LANG: RFC 6856 s3.1, valid in AUTHORIZATION and TRANSACTION; UTF8: s2, AUTHORIZATION.
    State.AUTHORIZATION: frozenset({Capa, User, Pass, Auth, Stls, Quit, Lang, Utf8}),
    State.SASL: frozenset(),
    State.TRANSACTION: frozenset({Capa, Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Quit, Lang}),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}
