"""Console logins: a signed session cookie, a CSRF token per login, nothing fixable.

The cookie holds a random session id and its HMAC under a key made when the process
starts (so a restart logs everybody out): a forged or altered cookie is rejected before
any lookup.  The login itself lives in this process's memory with its user, its CSRF
token and its two expiries: ``idle`` seconds without a request, or ``lifetime`` seconds
after the login, whichever comes first.  A login always makes a new session id and drops
the one the browser came with, so an id planted before the login (session fixation) is
worth nothing after it.  The cookie is HttpOnly (no script reads it), SameSite=Strict (no
other site's page makes the browser send it), scoped to ``/``, and Secure when the
console is served over TLS (a browser would not send a Secure cookie over plain HTTP,
which the loopback-only default uses).
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


@dataclass(slots=True)
class Login:
    user: str
    csrf: str
    ends: float  # monotonic seconds: the absolute expiry
    seen: float  # monotonic seconds of the latest request (for the idle expiry)
    notice: str = ""  # one line for the next page shown ("user carol added")


class ConsoleSessions:
    def __init__(self, clock: Clock, *, lifetime: float, idle: float, secure: bool) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._idle = idle
        self._secure = secure
        self._key = secrets.token_bytes(32)
        self._logins: dict[str, Login] = {}

    def find(self, request: web.Request) -> Login | None:
        """The live login the request's cookie names; a request keeps it from idling out."""
        session_id = self._verify(request.cookies.get(COOKIE, ""))
        if session_id is None:
            return None
        login = self._logins.get(session_id)
        now = self._clock.monotonic()
        if login is None or login.ends <= now or login.seen + self._idle <= now:
            self._logins.pop(session_id, None)
            return None
        login.seen = now
        return login

    def start(self, request: web.Request, response: web.StreamResponse, user: str) -> Login:
        """A new login for ``user``: a fresh id (the old one, if any, is dropped)."""
        self.end(request, response)
        if len(self._logins) >= MAX_LOGINS:
            del self._logins[next(iter(self._logins))]
        session_id = secrets.token_urlsafe(32)
        now = self._clock.monotonic()
        login = Login(user, secrets.token_urlsafe(32), now + self._lifetime, now)
        self._logins[session_id] = login
        response.set_cookie(
            COOKIE,
            f"{session_id}.{self._sign(session_id)}",
            httponly=True,
            secure=self._secure,
            samesite="Strict",
            path="/",
        )
        return login

    def end(self, request: web.Request, response: web.StreamResponse) -> None:
        session_id = self._verify(request.cookies.get(COOKIE, ""))
        if session_id is not None:
            self._logins.pop(session_id, None)
        response.del_cookie(COOKIE, path="/")

    def _sign(self, session_id: str) -> str:
        signed = hmac.new(self._key, session_id.encode("utf-8", "replace"), hashlib.sha256)
        return signed.hexdigest()

    def _verify(self, cookie: str) -> str | None:
        session_id, _, signature = cookie.partition(".")
        # Compared as bytes: compare_digest refuses str with non-ASCII characters.
        sent = signature.encode("utf-8", "replace")
        if not session_id or not hmac.compare_digest(sent, self._sign(session_id).encode()):
            return None
        return session_id
