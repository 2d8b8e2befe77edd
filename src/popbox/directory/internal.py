"""The internal directory: the mail store's users table (``popbox user add``).

A login is known here when its record holds a password: the argon2id hash
``popbox user add`` makes, or a hash ``popbox user import passwd-file`` kept in its
original scheme (``IMPORTED``).  A record without either is the mailbox of another
directory's user, whose password is not this directory's to judge: UNKNOWN, so the
chain goes on to that directory.  A recipient (``lookup``) is known when its mailbox
exists, as it was before directories existed: mail to a mailbox is not refused because
the user's directory dropped the user (``popbox user del`` removes the mailbox).

Timing (V0009): an unknown user is checked against the verifier's dummy argon2id hash at
the configured cost, which is what a wrong password for a known user costs (the verifier
pads cheaper stored hashes up to it).  An imported hash is checked while the dummy runs
beside it, so the answer comes no sooner than an unknown user's would; the first
successful login replaces it with argon2id (``auth.rehash_on_login``), which ends that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final, Protocol

from popbox.directory import schemes
from popbox.directory.base import Account, Status, Verdict
from popbox.store.base import ARGON2ID_VERIFIER, StoreError, StoreTemporaryError

if TYPE_CHECKING:
    from popbox.directory.base import LoginName
    from popbox.store.base import MailStore, UserRecord

__all__ = ["IMPORTED", "HashVerifier", "InternalDirectory"]

# Key of a hash imported from a passwd-file, kept as Dovecot wrote it ("{SCHEME}value").
IMPORTED: Final = "imported"


class HashVerifier(Protocol):
    """What the internal directory needs of ``auth.passwords.PasswordVerifier``."""

    async def verify(self, phc: str | None, password: str) -> bool: ...

    def needs_rehash(self, phc: str) -> bool: ...

    async def rehash(self, password: str) -> str: ...


class InternalDirectory:
    """The users table as a directory."""

    def __init__(
        self, name: str, store: MailStore, verifier: HashVerifier, *, rehash_on_login: bool
    ) -> None:
        self.name = name
        self._store = store
        self._verifier = verifier
        self._rehash = rehash_on_login
        self._healthy = True

    async def authenticate(self, login: LoginName, password: str, peer: str) -> Verdict:  # noqa: ARG002 - the store keeps no per-network rules
        try:
            record = await self._find(login)
        except StoreError as exc:
            await self._verifier.verify(None, password)  # the same work as any answer
            return self._outage(exc)
        phc = record.verifiers.get(ARGON2ID_VERIFIER) if record else None
        imported = record.verifiers.get(IMPORTED) if record else None
        if record is None or (phc is None and imported is None):
            await self._verifier.verify(None, password)
            return Verdict(Status.UNKNOWN, detail="no such user with a password")
        if phc is not None:
            right = await self._verifier.verify(phc, password)
        else:
            assert imported is not None
            right = await self._check_imported(imported, password)
        if not right:
            return Verdict(Status.WRONG, detail="wrong password")
        if self._rehash and (phc is None or self._verifier.needs_rehash(phc)):
            await self._upgrade(record, password)
        return self._verdict(record)

    async def lookup(self, login: LoginName) -> Verdict:
        try:
            record = await self._find(login)
        except StoreError as exc:
            return self._outage(exc)
        if record is None:
            return Verdict(Status.UNKNOWN, detail="no such mailbox")
        return self._verdict(record)

    def healthy(self) -> bool:
        return self._healthy

    async def close(self) -> None:
        """The store belongs to the server, which closes it."""

    async def _find(self, login: LoginName) -> UserRecord | None:
        # Users created before [names] existed are stored as they were typed: a name
        # the rules changed is also looked up as sent, so those keep working.
        record = await self._store.find_user(login.user)
        if record is None and login.raw != login.user:
            record = await self._store.find_user(login.raw)
        self._healthy = True
        return record

    def _outage(self, exc: StoreError) -> Verdict:
        """A store that cannot answer now is an outage; one that refuses (a corrupt
        record) is not, and retrying will not help."""
        temporary = isinstance(exc, StoreTemporaryError)
        self._healthy = not temporary
        detail = f"mail store {'unavailable' if temporary else 'refused'}: {type(exc).__name__}"
        return Verdict(Status.TEMPFAIL, detail=detail, permanent=not temporary)

    async def _check_imported(self, imported: str, password: str) -> bool:
        try:
            stored = schemes.parse(imported, "CRYPT")
        except schemes.SchemeError:
            await self._verifier.verify(None, password)
            return False
        right, _ = await asyncio.gather(
            _verify_scheme(stored, password), self._verifier.verify(None, password)
        )
        return right

    async def _upgrade(self, record: UserRecord, password: str) -> None:
        """Store a new argon2id hash unless the password changed meanwhile.

        Read again just before writing: an administrator who set a new password while
        we hashed must not see the old one come back.  The login stands whether or not
        the new hash is stored: a store that fails here is retried by the next login.
        """
        new_hash = await self._verifier.rehash(password)
        with contextlib.suppress(StoreError):
            current = await self._store.get_user(record.name)
            if current is None or dict(current.verifiers) != dict(record.verifiers):
                return
            verifiers = {k: v for k, v in current.verifiers.items() if k != IMPORTED}
            await self._store.set_verifiers(record.name, {**verifiers, ARGON2ID_VERIFIER: new_hash})

    @staticmethod
    def _verdict(record: UserRecord) -> Verdict:
        account = Account(record.name, record.quota, record.disabled_reason)
        if record.disabled_reason is not None:
            return Verdict(Status.DISABLED, account, detail="disabled by popbox user disable")
        return Verdict(Status.OK, account)


async def _verify_scheme(stored: schemes.StoredHash, password: str) -> bool:
    """``schemes.verify`` on a thread when it is costly, else here (a hop costs more)."""
    if schemes.costly(stored):
        return await asyncio.to_thread(schemes.verify, stored, password)
    return schemes.verify(stored, password)
