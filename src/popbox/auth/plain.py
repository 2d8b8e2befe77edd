"""SASL PLAIN (RFC 4616), and the password check every plaintext mechanism shares.

The client sends ``[authzid] NUL authcid NUL passwd`` in UTF-8, in the initial response
or after an empty challenge.  The password is checked against the user's argon2id hash
off the event loop (an unknown user costs the same, V0009), and a hash made with other
than the configured parameters is replaced on success.  ``authzid`` must be empty
or equal to ``authcid``, unless ``authcid`` is listed in ``auth.admins``: then the
administrator, having proved their own password, opens the mailbox named by ``authzid``.
"""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.passwords import ARGON2ID, PasswordVerifier
from popbox.protocol.mechanisms import PLAIN
from popbox.store.base import StoreError

if TYPE_CHECKING:
    from popbox.auth.base import AuthContext, Step
    from popbox.store.base import MailStore

__all__ = ["PasswordSettings", "PlainMechanism", "check_password", "text_field"]

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
    store: MailStore, user: str, password: str, verifier: PasswordVerifier, *, known: bool = True
) -> bool:
    """True when ``password`` is ``user``'s; an unknown user costs the same work (V0009).

    ``known=False``: the name is looked up but treated as unknown whatever the store says.

    On success a hash made with other than the configured parameters is replaced by one
    at the configured cost while the plaintext is at hand.  Raises ``StoreError`` when
    the user cannot be looked up.
    """
    record = await store.get_user(user)
    phc = record.verifiers.get(ARGON2ID) if record is not None and known else None
    if not await verifier.verify(phc, password):
        return False
    assert phc is not None  # nothing verifies without a stored hash
    if verifier.needs_rehash(phc):
        # The login stands whether or not the new hash is stored: a store that fails
        # here is retried by the next successful login.
        with contextlib.suppress(StoreError):
            await _upgrade(store, user, phc, await verifier.rehash(password))
    return True


async def _upgrade(store: MailStore, user: str, verified: str, new_hash: str) -> None:
    """Store ``new_hash`` for ``user`` unless the hash changed since it was verified.

    Read again just before writing: an administrator who set a new password while we
    hashed must not see the old one come back.  (The store has no compare-and-set, so a
    change landing between this read and the write is still overwritten.)
    """
    record = await store.get_user(user)
    if record is None or record.verifiers.get(ARGON2ID) != verified:
        return
    await store.set_verifiers(user, {**record.verifiers, ARGON2ID: new_hash})


async def authorize(
    context: AuthContext, authcid: str, authzid: str, settings: PasswordSettings
) -> Step:
    """After ``authcid`` proved its password: may it open ``authzid``'s mailbox?"""
    if not authzid or authzid == authcid:
        return Success(authcid)
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
        if not await check_password(
            self._context.store, authcid, password, self._settings.verifier
        ):
            return Failure("wrong password or unknown user", authcid)
        return await authorize(self._context, authcid, authzid, self._settings)
