"""What the connection writes, and where it goes on, when the I/O layer answers an event.

Theory of operation: pure decisions, as ``authorization.py`` and ``transaction.py`` make
them for commands.  Each answer method of ``Pop3Connection`` first checks that the answer
fits the event it waits for; the answers below come once a session (the login, UPDATE,
the shutdown) or on a failure, and get from here the phase to go on in and the status
line to write, which the connection then applies.  ``send_message``, which answers every
RETR and TOP, decides for itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol.maildrop import Maildrop
from popbox.protocol.phases import Authorization, Transaction
from popbox.protocol.replies import Err, Ok, RespCode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.protocol.events import ConnectionSettings, Update
    from popbox.protocol.message_info import MessageInfo
    from popbox.protocol.phases import Sasl
    from popbox.protocol.profiles import Texts

__all__ = ["logged_in", "shut_down", "store_failure", "updated"]


def logged_in(
    user: str, messages: Sequence[MessageInfo], settings: ConnectionSettings, texts: Texts
) -> tuple[Transaction, Ok]:
    """TRANSACTION on the maildrop, numbered and sized as the settings say, and its +OK."""
    s = settings
    maildrop = Maildrop(messages, exact_size=s.exact_rfc822_size, newest_first=s.newest_first)
    count, size = maildrop.stat()
    return Transaction(user, maildrop), Ok(texts.logged_in(count, size))


def store_failure(
    resume: Authorization | Sasl | Transaction, texts: Texts, code: RespCode, text: str | None
) -> tuple[Authorization | Transaction, Err]:
    """A RETR or TOP the store could not answer stays in TRANSACTION; a login (a SASL
    exchange too) starts over in AUTHORIZATION.  ``text`` replaces the text for ``code``."""
    phase = resume if isinstance(resume, Transaction) else Authorization()
    return phase, Err(texts.store_failed(code) if text is None else text, code)


def updated(event: Update, texts: Texts, *, ok: bool, code: RespCode) -> Ok | Err:
    """UPDATE's last line: every marked message removed, or none of them (V0006)."""
    if ok:
        return Ok(texts.signed_off(len(event.deleted)))
    return Err(texts.update_failed(code), code)


def shut_down(texts: Texts, *, by_admin: bool) -> Err:
    """The last line of a session the server (or an administrator) ends."""
    if by_admin:
        return Err("session closed by an administrator")
    return Err(texts.shutting_down, RespCode.SYS_TEMP)
