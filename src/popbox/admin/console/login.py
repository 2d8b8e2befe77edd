"""Who may log in to the console, and the check of a console login's password.

A console administrator is a popbox user named in ``[admin] users`` or in
``auth.admins`` (who may already act as any user over PLAIN), logging in with their own
POP3 password.  The check is the POP3 login's: the brute-force guard first (a locked-out
address or name is refused before any hashing), then the argon2id verifier with the
same padding for an unknown or non-admin name as for a wrong password (V0009: the
answer and its timing do not tell which names exist or are administrators), and a
failure delay that grows with recent failures.  A disabled account does not log in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from popbox.auth.guard import GuardUnavailable
from popbox.auth.passwords import ARGON2ID

if TYPE_CHECKING:
    from popbox.auth.guard import Guard
    from popbox.auth.passwords import PasswordVerifier
    from popbox.clock import Clock
    from popbox.config import Config
    from popbox.store.base import MailStore

__all__ = ["ConsoleAuth", "administrators"]

NAME_MAX = 255  # characters of a login name looked at


def administrators(config: Config) -> frozenset[str]:
    return frozenset(config.admin.users) | frozenset(config.auth.admins)


class ConsoleAuth:
    def __init__(
        self,
        *,
        store: MailStore,
        passwords: PasswordVerifier,
        guard: Guard,
        clock: Clock,
        admins: frozenset[str],
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._guard = guard
        self._clock = clock
        self.admins = admins

    async def refusal(self, ip: str, name: str, password: str) -> str | None:
        """Why ``name`` may not log in with ``password`` from ``ip``; None: they may."""
        name = name[:NAME_MAX]
        try:
            standing = await self._guard.check(ip, name)
            if standing.locked_for > 0:
                return (
                    f"too many failed logins: try again in {math.ceil(standing.locked_for)} seconds"
                )
            record = await self._store.get_user(name) if name in self.admins else None
            stored = record.verifiers.get(ARGON2ID) if record is not None else None
            if not await self._passwords.verify(stored, password):
                delay = (await self._guard.failed(ip, name)).delay
                if delay > 0:
                    await self._clock.sleep(delay)
                return "wrong name or password, or not a console administrator"
            if record is not None and record.disabled_reason is not None:
                return "this account is disabled"
            if standing.user_scored:
                await self._guard.succeeded(name)
        except GuardUnavailable:
            return "the login defence cannot be reached: try again later"
        return None
