"""AUTHORIZATION-state commands (RFC 1939 section 4) decided from the state's data.

Pure decisions, as ``transaction.py`` makes them for TRANSACTION: USER, PASS, AUTH and
STLS each get a reply to send at once, a ``ParseError`` for input that counts as a bad
command, or the event the I/O layer must answer (``PasswordLogin``, ``SaslStart``,
``StartTls``).  The connection writes the reply or waits for the answer; CAPA, LANG and
QUIT are the connection's, as they are the same in every state or end it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol import commands as c
from popbox.protocol import sasl
from popbox.protocol.events import PasswordLogin, SaslStart, StartTls
from popbox.protocol.policy import plaintext_allowed
from popbox.protocol.replies import Err, Ok

if TYPE_CHECKING:
    from popbox.protocol.events import ConnectionSettings
    from popbox.protocol.phases import Authorization
    from popbox.protocol.profiles import Texts

__all__ = ["answer"]


def answer(  # noqa: PLR0911 - one return per outcome, as transaction.answer
    command: c.User | c.Pass | c.Auth | c.Stls,
    phase: Authorization,
    settings: ConnectionSettings,
    texts: Texts,
    *,
    tls_active: bool,
) -> Ok | Err | bytes | c.ParseError | PasswordLogin | SaslStart | StartTls:
    """The reply to USER, PASS, AUTH or STLS, or the event that must answer it."""
    plaintext_ok = plaintext_allowed(settings, tls_active=tls_active, sasl=False)
    if isinstance(command, c.User):  # V0008/V0009: +OK whether it exists or not
        if settings.wire.exchange or plaintext_ok:  # Exchange: PASS checks (V0008)
            phase.pending_user, phase.name_valid = command.name, command.problem is None
            return Ok(texts.user)
        return Err(texts.plaintext_refused)
    if isinstance(command, c.Pass):
        return _pass(command.password, phase, texts, plaintext_ok=plaintext_ok)
    if isinstance(command, c.Auth):
        mechanism, initial = command.mechanism, command.initial_response
        request = sasl.auth_request(settings, mechanism, initial, tls_active=tls_active)
        if isinstance(request, SaslStart):
            phase.pending_user = None
        return request
    if tls_active:  # STLS
        return Err(texts.already_tls)
    if not settings.stls_available:
        return Err(texts.no_tls)
    return StartTls()


def _pass(
    password: str, phase: Authorization, texts: Texts, *, plaintext_ok: bool
) -> Err | c.ParseError | PasswordLogin:
    if phase.pending_user is None:
        return c.ParseError(texts.pass_without_user)
    if not plaintext_ok:  # V0010; only Exchange profiles get here
        return Err(texts.plaintext_refused)
    return PasswordLogin(phase.pending_user, password, phase.name_valid)
