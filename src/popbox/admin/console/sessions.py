"""Console logins: a signed session cookie, a CSRF token per login, nothing fixable.

The cookie holds a random session id and its HMAC under a key made when the process
starts (so a restart logs everybody out): a forged or altered cookie is rejected before
any lookup.  The login itself lives in this process's memory with its user, its CSRF
token and its expiry.  A login always makes a new session id and drops the one the
browser came with, so an id planted before the login (session fixation) is worth
nothing after it.  The cookie is HttpOnly (no script reads it), Secure (browsers treat
loopback HTTP as a secure context), SameSite=Strict (no other site's page makes the
browser send it) and scoped to ``/``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from popbox.clock import Clock

__all__ = ["COOKIE", "ConsoleSessions", "Login"]

COOKIE = "popbox_console"
MAX_LOGINS = 10_000  # live logins kept; the oldest goes first


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    csrf: str
    expires: float  # monotonic seconds


class ConsoleSessions:
    def __init__(self, clock: Clock, lifetime: float) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._logins: dict[str, Login] = {}

    def find(self, request: web.Request) -> Login | None:
        session_id = self._verify(request.cookies.get(COOKIE, ""))
        if session_id is None:
            return None
        login = self._logins.get(session_id)
        if login is None or login.expires <= self._clock.monotonic():
            self._logins.pop(session_id, None)
            return None
        return login

    def start(self, request: web.Request, response: web.StreamResponse, user: str) -> Login:
        """A new login for ``user``: a fresh id (the old one, if any, is dropped)."""
        self.end(request, response)
        if len(self._logins) >= MAX_LOGINS:
            del self._logins[next(iter(self._logins))]
        session_id = secrets.token_urlsafe(32)
        login = Login(user, secrets.token_urlsafe(32), self._clock.monotonic() + self._lifetime)
        self._logins[session_id] = login
        response.set_cookie(
            COOKIE,
            f"{session_id}.{self._sign(session_id)}",
            httponly=True,
            secure=True,
            samesite="Strict",
            path="/",
            max_age=int(self._lifetime),
        )
        return login

    def end(self, request: web.Request, response: web.StreamResponse) -> None:
        session_id = self._verify(request.cookies.get(COOKIE, ""))
        if session_id is not None:
            self._logins.pop(session_id, None)
        response.del_cookie(COOKIE, path="/")

    def _sign(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def _verify(self, cookie: str) -> str | None:
        session_id, _, signature = cookie.partition(".")
        if not session_id or not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        return session_id
