"""Helpers for tests of code built on the sans-IO POP3 core; shipped so others can reuse them.

``talk`` feeds a byte script to a ``Pop3Connection`` chunk by chunk and answers every event
with a responder, the way the session layer would, and returns what the server wrote and
which events it raised.  ``Responder`` plays a store holding one user and a few messages.
(A clock for tests of the server, whose time moves only when told, is
``popbox.clock.ManualClock``: it needs the event loop, which the core never touches.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.protocol.connection import (
    ConnectionSettings,
    PasswordLogin,
    Pop3Connection,
    Retrieve,
    SaslContinue,
    SaslStart,
    Signal,
    StartTls,
    Update,
)
from popbox.protocol.message_info import MessageInfo
from popbox.protocol.replies import Err, RespCode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from popbox.protocol.connection import Event

__all__ = ["Exchange", "Responder", "logged_in", "message_info", "talk"]


def message_info(
    uid: int,
    size: int,
    *,
    stored_size: int | None = None,
    legacy_uidl: str | None = None,
    received_at: float = 0.0,
) -> MessageInfo:
    """A snapshot entry; the stored size defaults to the exact size."""
    return MessageInfo(
        uid=uid,
        size=size,
        stored_size=size if stored_size is None else stored_size,
        received_at=received_at,
        legacy_uidl=legacy_uidl,
    )


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one ``talk`` produced: the output bytes and the events (NEED_DATA left out)."""

    output: bytes
    events: list[Event | Signal]


@dataclass(slots=True)
class Responder:
    """Answers events as a store with one user and ``messages`` (info, wire form) would.

    USER/PASS and SASL PLAIN check ``user``/``password``; other mechanisms fail.  TOP
    sends the header section, the blank line and at most ``lines`` body lines.  Every
    ``Update`` is kept in ``updates`` and answered with ``update_ok``.
    """

    user: str = "alice"
    password: str = "secret"  # noqa: S105 - a fixture, not a secret
    messages: Sequence[tuple[MessageInfo, bytes]] = ()
    update_ok: bool = True
    updates: list[Update] = field(default_factory=list)

    def __call__(self, conn: Pop3Connection, event: Event) -> None:
        match event:
            case PasswordLogin(user, password, valid_name):  # an invalid name never logs in
                self._login(conn, ok=valid_name and (user, password) == (self.user, self.password))
            case SaslStart("PLAIN", None):
                conn.sasl_challenge(b"")
            case SaslStart("PLAIN", bytes(response)) | SaslContinue(response):
                expected = f"\0{self.user}\0{self.password}".encode()
                self._login(conn, ok=response in {expected, self.user.encode() + expected})
            case SaslStart():
                self._login(conn, ok=False)
            case StartTls():
                conn.tls_established()
            case Retrieve(_, info, lines):
                wire = {i.uid: w for i, w in self.messages}.get(info.uid)
                if wire is None:
                    conn.message_gone()
                else:
                    conn.send_message(wire if lines is None else _top(wire, lines))
            case Update():
                self.updates.append(event)
                conn.update_finished(ok=self.update_ok)
            case _:  # SaslCancelled: already answered by the connection
                pass

    def _login(self, conn: Pop3Connection, *, ok: bool) -> None:
        if ok:
            conn.login_succeeded(self.user, [info for info, _ in self.messages])
        else:
            conn.login_failed(Err("authentication failed", RespCode.AUTH))


def _top(wire: bytes, lines: int) -> bytes:
    head, separator, body = wire.partition(b"\r\n\r\n")
    return head + separator + b"".join(body.splitlines(keepends=True)[:lines])


def talk(
    conn: Pop3Connection,
    *chunks: bytes,
    respond: Callable[[Pop3Connection, Event], None] | None = None,
) -> Exchange:
    """Feed ``chunks`` one at a time, answering each event with ``respond``.

    Without ``respond`` the first event is returned unanswered; the chunks not yet fed
    are buffered, so the caller answers it and calls ``talk`` again.  Stops at CLOSED.
    """
    output: list[bytes] = []
    events: list[Event | Signal] = []
    pending = list(chunks)
    while pending:
        conn.receive_data(pending.pop(0))
        while (event := conn.next_event()) is not Signal.NEED_DATA:
            if event is Signal.PAUSED:  # the output queue is full: take it, go on
                output += conn.data_to_send()
                continue
            events.append(event)
            if event is Signal.CLOSED:
                output += conn.data_to_send()
                return Exchange(b"".join(output), events)
            if respond is None:
                for chunk in pending:
                    conn.receive_data(chunk)
                output += conn.data_to_send()
                return Exchange(b"".join(output), events)
            assert not isinstance(event, Signal)
            respond(conn, event)
        output += conn.data_to_send()
    return Exchange(b"".join(output) + b"".join(conn.data_to_send()), events)


def logged_in(
    messages: Sequence[MessageInfo] = (),
    settings: ConnectionSettings | None = None,
    *,
    user: str = "alice",
) -> Pop3Connection:
    """A connection already in TRANSACTION on ``messages``, its output drained.

    The default settings describe an implicit-TLS listener, where USER/PASS is allowed.
    """
    conn = Pop3Connection(settings or ConnectionSettings(tls_active=True))
    conn.receive_data(f"USER {user}\r\nPASS secret\r\n".encode())
    event = conn.next_event()
    if not isinstance(event, PasswordLogin):
        raise TypeError(f"these settings refuse USER/PASS: got {event!r}")
    conn.login_succeeded(user, messages)
    conn.data_to_send()
    return conn
