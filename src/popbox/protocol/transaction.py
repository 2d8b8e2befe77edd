"""TRANSACTION-state commands (RFC 1939 section 5) answered from the session's maildrop.

Pure decisions: each command either gets its reply at once (a status line, or a
multi-line listing as serialised bytes), or becomes the event the I/O layer must answer
(``Retrieve`` for RETR and TOP, ``Update`` for QUIT).  The connection writes the reply or
waits for the answer; CAPA is the connection's, as it is the same in every state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol import commands as c
from popbox.protocol.events import Retrieve, Update
from popbox.protocol.replies import Err, Ok, counted, multiline

if TYPE_CHECKING:
    from popbox.protocol.maildrop import Maildrop

__all__ = ["answer"]


def answer(  # noqa: C901, PLR0911 - one arm per command
    command: c.Command, maildrop: Maildrop, listings: dict[type, bytes]
) -> Ok | Err | bytes | Retrieve | Update:
    """The reply to a command allowed in TRANSACTION, or the event that must answer it.

    ``listings`` keeps the full LIST and UIDL replies between the changes DELE and RSET
    make; the caller gives the same dict for the whole session.
    """
    match command:
        case c.Retr(msg) | c.Top(msg, _):  # first: the command a download repeats
            info = maildrop.get(msg)
            if isinstance(info, Err):
                return info
            lines = command.lines if isinstance(command, c.Top) else None
            return Retrieve(msg, info, lines)
        case c.Stat():
            count, size = maildrop.stat()
            return Ok(f"{count} {size}")  # V0004: nothing after the size
        case c.List(None):
            return listings.get(c.List) or _listing(c.List, maildrop, listings)
        case c.List(msg) if msg is not None:
            info = maildrop.get(msg)
            return info if isinstance(info, Err) else Ok(f"{msg} {maildrop.size_of(info)}")
        case c.Uidl(None):
            return listings.get(c.Uidl) or _listing(c.Uidl, maildrop, listings)
        case c.Uidl(msg) if msg is not None:
            info = maildrop.get(msg)
            return info if isinstance(info, Err) else Ok(f"{msg} {info.uidl}")
        case c.Dele(msg):
            info = maildrop.delete(msg)
            if isinstance(info, Err):
                return info
            listings.clear()
            return Ok(f"message {msg} deleted")
        case c.Rset():
            maildrop.reset()
            listings.clear()
            count, size = maildrop.stat()
            return Ok(f"maildrop has {counted(count, 'message')} ({size} octets)")
        case c.Quit():
            return Update(maildrop.deleted_uids(), maildrop.retrieved_uids())
        case _:  # NOOP; ALLOWED[TRANSACTION] lets nothing else reach here
            return Ok()


def _listing(kind: type, maildrop: Maildrop, listings: dict[type, bytes]) -> bytes:
    """Build the full LIST or UIDL reply and keep it in ``listings``."""
    if kind is c.List:
        status = Ok("scan listing follows")
        lines = [f"{n} {maildrop.size_of(i)}" for n, i in maildrop.live()]
    else:
        status = Ok("unique-id listing follows")
        lines = [f"{n} {i.uidl}" for n, i in maildrop.live()]
    reply = listings[kind] = multiline(status, lines)
    return reply
