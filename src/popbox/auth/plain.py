"""SASL PLAIN (RFC 4616), and the password check every plaintext mechanism shares.

The client sends ``[authzid] NUL authcid NUL passwd`` in UTF-8, in the initial response
or after an empty challenge.  The password is checked by the chain of user directories
(``directory/``: the mail store's argon2id hashes, a passwd-file, LDAP), where an unknown
user costs what a wrong password costs (V0009).  ``authzid`` must be empty
or equal to ``authcid``, unless ``authcid`` is listed in ``auth.admins``: then the
administrator, having proved their own password, opens the mailbox named by ``authzid``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.passwords import PasswordVerifier
from popbox.directory.base import Status
from popbox.directory.factory import internal_chain
from popbox.protocol.mechanisms import PLAIN

if TYPE_CHECKING:
    from popbox.auth.base import AuthContext, Step
    from popbox.directory.chain import Answer

__all__ = ["PasswordSettings", "PlainMechanism", "check_password", "step_of", "text_field"]

MAX_FIELD_OCTETS: Final = 255  # RFC 4616 s2: each of authzid, authcid, passwd


@dataclass(frozen=True, slots=True)
class PasswordSettings:
    """What the password mechanisms share, built once per server."""

    verifier: PasswordVerifier = field(default_factory=PasswordVerifier)
    admins: frozenset[str] = field(default_factory=frozenset)


def text_field(data: bytes, *, allow_empty: bool = False) -> str | None:
    """``data`` as an identity or password: UTF-8, at most 255 octets, no control
    characters (what SASLprep prohibits that matters for a name); None when it is not."""
    if len(data) > MAX_FIELD_OCTETS or (not data and not allow_empty):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return None
    return text


async def check_password(
    context: AuthContext, settings: PasswordSettings, user: str, password: str
) -> Success | Failure:
    """Ask the directories whether ``password`` is ``user``'s: the outcome as a step.

    Every failure is the same to the client ([AUTH]) except two that the password
    alone cannot cause: a directory that cannot answer, and the right password for a
    disabled account (V0008: only someone with the password learns the account exists).
    """
    directories = context.directories or internal_chain(context.store, settings.verifier)
    answer = await directories.authenticate(user, password, context.peer_ip)
    return step_of(answer)


def step_of(answer: Answer) -> Success | Failure:
    """The login step a directory chain's answer makes."""
    verdict, raw = answer.verdict, answer.login.raw
    match verdict.status:
        case Status.OK:
            assert verdict.account is not None
            vouched = None if answer.stored else verdict.account
            return Success(verdict.account.mailbox, vouched)
        case Status.DISABLED:
            assert verdict.account is not None
            reason = verdict.account.disabled_reason or ""
            return Failure(f"account disabled: {verdict.detail}", raw, disabled_reason=reason)
        case Status.TEMPFAIL:
            detail = f"directory {answer.directory} unavailable: {verdict.detail}"
            directory = "" if answer.stored else answer.directory
            return Failure(
                detail, raw, temporary=True, directory=directory, permanent=verdict.permanent
            )
        case _:  # the log tells these apart no more than the client (V0008)
            return Failure("wrong password or unknown user", raw)


async def authorize(
    context: AuthContext, proved: Success, authcid: str, authzid: str, settings: PasswordSettings
) -> Step:
    """After ``authcid`` proved its password (``proved``): may it open ``authzid``'s mailbox?"""
    if not authzid or authzid == authcid:
        return proved
    if authcid not in settings.admins:
        return Failure("authorization identity differs and the user is no admin", authcid)
    if await context.store.get_user(authzid) is None:
        return Failure("admin asked for a mailbox that does not exist", authcid)
    return Success(authzid)


class PlainMechanism:
    """One PLAIN exchange."""

    name: ClassVar[str] = PLAIN
    plaintext: ClassVar[bool] = True

    def __init__(self, context: AuthContext, settings: PasswordSettings) -> None:
        self._context = context
        self._settings = settings
        self._waiting = False

    async def start(self, initial: bytes | None) -> Step:
        if initial is None:  # RFC 4616 s2: the server's first challenge is empty
            self._waiting = True
            return Challenge(b"")
        return await self._verify(initial)

    async def step(self, response: bytes) -> Step:
        if not self._waiting:
            return Failure("PLAIN takes one client message")
        self._waiting = False
        return await self._verify(response)

    async def _verify(self, message: bytes) -> Step:
        parts = message.split(b"\0")
        if len(parts) != 3:
            return Failure("PLAIN message is not authzid NUL authcid NUL passwd")
        authzid = text_field(parts[0], allow_empty=True)
        authcid = text_field(parts[1])
        password = text_field(parts[2])
        if authzid is None or authcid is None:
            return Failure("PLAIN identity is not valid UTF-8 text")
        if password is None:
            return Failure("PLAIN password is empty, too long or not valid text", authcid)
        step = await check_password(self._context, self._settings, authcid, password)
        if isinstance(step, Failure):
            return step
        return await authorize(self._context, step, authcid, authzid, self._settings)
