"""AUTHORIZATION-state commands (RFC 1939 section 4) decided from the state's data.

Pure decisions, as ``transaction.py`` makes them for TRANSACTION: USER, PASS, AUTH and
STLS each get a reply to send at once, a ``ParseError`` for input that counts as a bad
command, or the event the I/O layer must answer (``PasswordLogin``, ``SaslStart``,
``StartTls``).  The connection writes the reply or waits for the answer; CAPA, LANG and
QUIT are the connection's, as they are the same in every state or end it, and so is
UTF8, which changes the whole session.

UTF-8 names and passwords (RFC 6856 s2.2): the modern profile lists ``UTF8 USER``, so a
client may send them with or without the UTF8 command.  USER's name gets SASLprep (a
query string, RFC 4013); PASS's password is refused when it is not UTF-8 or holds a
character SASLprep prohibits, and is otherwise checked as sent: stored password hashes
were made from the password as it was set, which SASLprep's mapping could change.  The
Exchange profiles list no UTF8 and keep every octet (V0008: USER is never refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol import commands as c
from popbox.protocol import sasl
from popbox.protocol.events import PasswordLogin, SaslStart, StartTls
from popbox.protocol.policy import plaintext_allowed
from popbox.protocol.profiles import texts_of
from popbox.protocol.replies import Err, Ok
from popbox.protocol.saslprep import SaslprepError, saslprep

if TYPE_CHECKING:
    from popbox.protocol.events import ConnectionSettings
    from popbox.protocol.phases import Authorization
    from popbox.protocol.profiles import Texts

__all__ = ["answer"]


def answer(
    command: c.User | c.Pass | c.Auth | c.Stls,
    phase: Authorization,
    settings: ConnectionSettings,
    *,
    tls_active: bool,
    utf8: bool,
) -> Ok | Err | bytes | c.ParseError | PasswordLogin | SaslStart | StartTls:
    """The reply to USER, PASS, AUTH or STLS, or the event that must answer it.

    ``utf8``: the UTF8 command has put the session in UTF-8 mode (RFC 6856 s2.1).
    """
    texts = texts_of(settings.wire)
    plaintext_ok = plaintext_allowed(settings, tls_active=tls_active, sasl=False)
    if isinstance(command, c.User):  # V0008/V0009: +OK whether it exists or not
        if settings.wire.exchange:  # PASS checks the name (V0008)
            phase.pending_user, phase.name_valid = command.name, command.problem is None
            return Ok(texts.user)
        return _user(command.name, phase, texts) if plaintext_ok else Err(texts.plaintext_refused)
    if isinstance(command, c.Pass):
        return _pass(command, phase, settings, plaintext_ok=plaintext_ok)
    if isinstance(command, c.Auth):
        mechanism, initial = command.mechanism, command.initial_response
        request = sasl.auth_request(settings, mechanism, initial, tls_active=tls_active)
        if isinstance(request, SaslStart):
            phase.pending_user = None
        return request
    return _stls(settings, texts, tls_active=tls_active, utf8=utf8)


def _stls(
    settings: ConnectionSettings, texts: Texts, *, tls_active: bool, utf8: bool
) -> Err | StartTls:
    if tls_active:
        return Err(texts.already_tls)
    if utf8:  # RFC 6856 s2.1: "Clients MUST NOT issue the STLS command after issuing UTF8"
        return Err("STLS is not allowed after UTF8")
    if not settings.stls_available:
        return Err(texts.no_tls)
    return StartTls()


def _pass(
    command: c.Pass, phase: Authorization, settings: ConnectionSettings, *, plaintext_ok: bool
) -> Err | c.ParseError | PasswordLogin:
    texts = texts_of(settings.wire)
    if phase.pending_user is None:
        return c.ParseError(texts.pass_without_user)
    if not plaintext_ok:  # V0010; only Exchange profiles get here
        return Err(texts.plaintext_refused)
    if not settings.wire.exchange:
        problem = _password_problem(command)
        if problem is not None:
            return c.ParseError(problem)
    return PasswordLogin(phase.pending_user, command.password, phase.name_valid)


def _user(name: str, phase: Authorization, texts: Texts) -> Ok | c.ParseError:
    """The modern profile's USER: the name in its SASLprep form (RFC 6856 s2.2)."""
    if not name.isascii():  # SASLprep leaves printable ASCII as it is
        try:
            name = saslprep(name, query=True)
        except SaslprepError as exc:
            return c.ParseError(f"USER mailbox name is not a valid name ({exc})")
    phase.pending_user, phase.name_valid = name, True
    return Ok(texts.user)


def _password_problem(command: c.Pass) -> str | None:
    """RFC 6856 s2.2: "The server MUST reject UTF-8 usernames or passwords that fail to
    comply with the formal syntax in UTF-8", and those SASLprep prohibits."""
    if not command.utf8:
        return "PASS password is not valid UTF-8"
    if command.password.isascii() and command.password.isprintable():
        return None  # SASLprep prohibits nothing in printable ASCII
    try:
        saslprep(command.password, query=True)
    except SaslprepError as exc:
        return f"PASS password is not valid ({exc})"
    return None
