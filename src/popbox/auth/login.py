"""The legacy LOGIN mechanism (draft-murchison-sasl-login), as Outlook and devices send it.

The server asks "Username:" then "Password:" (Outlook shows nothing else and some
clients compare the text), each as a base64 challenge; a client may instead put the
user name in the initial response and get "Password:" at once.  The password is checked
exactly as PLAIN checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from popbox.auth.base import Challenge, Failure
from popbox.auth.plain import check_password, text_field
from popbox.protocol.mechanisms import LOGIN

if TYPE_CHECKING:
    from popbox.auth.base import AuthContext, Step
    from popbox.auth.plain import PasswordSettings

__all__ = ["LoginMechanism"]

USERNAME_CHALLENGE: Final = b"Username:"
PASSWORD_CHALLENGE: Final = b"Password:"


class LoginMechanism:
    """One LOGIN exchange: user name, then password."""

    name: ClassVar[str] = LOGIN
    plaintext: ClassVar[bool] = True

    def __init__(self, context: AuthContext, settings: PasswordSettings) -> None:
        self._context = context
        self._settings = settings
        self._user: str | None = None

    async def start(self, initial: bytes | None) -> Step:
        if not initial:  # none, or "=": ask for the name
            return Challenge(USERNAME_CHALLENGE)
        return await self.step(initial)

    async def step(self, response: bytes) -> Step:
        if self._user is None:
            user = text_field(response)
            if user is None:
                return Failure("LOGIN user name is not valid UTF-8 text")
            self._user = user
            return Challenge(PASSWORD_CHALLENGE)
        password = text_field(response)
        if password is None:
            return Failure("LOGIN password is empty, too long or not valid text", self._user)
        return await check_password(self._context, self._settings, self._user, password)
