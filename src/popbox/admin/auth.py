"""Who is calling: a bearer token or a console login; what it may do; CSRF for browsers.

Every ``/api/v1`` route but the OpenAPI document needs a caller.  A bearer token
(``Authorization: Bearer popbox_...``) carries its scope: ``read`` may call GET
operations, ``admin`` everything.  A console login (the session cookie,
``console/sessions.py``) has the ``admin`` scope, and because a browser sends its cookie
with any request, also one a hostile page makes it send, every state change made with a
cookie must carry the session's CSRF token (``X-CSRF-Token`` header or ``csrf`` form
field).  Without a valid caller the answer is 401; with too small a scope, 403.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from popbox.admin import tokens
from popbox.admin.actions import Actor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from popbox.admin.console.sessions import ConsoleSessions
    from popbox.clock import Clock
    from popbox.store.base import MailStore

__all__ = ["CALLER", "Caller", "authenticate", "requires"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPE_KEY = "popbox_scope"


@dataclass(frozen=True, slots=True)
class Caller:
    actor: Actor
    scope: str  # "read" or "admin"
    csrf: str | None = None  # a console login's CSRF token; None for a bearer token


CALLER: web.RequestKey[Caller] = web.RequestKey("popbox_caller", Caller)


def requires(scope: str) -> Callable[[Any], Any]:
    """Mark a handler with the scope it needs (``read`` or ``admin``)."""

    def mark(handler: Any) -> Any:
        setattr(handler, SCOPE_KEY, scope)
        return handler

    return mark


def peer_of(request: web.Request) -> str:
    return request.remote or "-"


async def find_caller(
    request: web.Request, store: MailStore, sessions: ConsoleSessions | None, clock: Clock
) -> Caller | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer":
        record = await tokens.authenticate(store, credential.strip(), now=clock.wall())
        if record is None:
            return None
        return Caller(Actor(f"token:{record.id}", peer_of(request)), record.scope)
    if sessions is not None:
        login = sessions.find(request)
        if login is not None:
            return Caller(Actor(f"console:{login.user}", peer_of(request)), "admin", login.csrf)
    return None


async def csrf_ok(request: web.Request, caller: Caller) -> bool:
    if caller.csrf is None or request.method in SAFE_METHODS:
        return True
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type == "application/x-www-form-urlencoded":
        sent = str((await request.post()).get("csrf", ""))
    return sent is not None and hmac.compare_digest(sent.encode(), caller.csrf.encode())


def authenticate(
    store: MailStore, sessions: ConsoleSessions | None, clock: Clock
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware: sets ``request[CALLER]`` or answers 401/403 itself."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        scope = getattr(request.match_info.handler, SCOPE_KEY, None)
        if scope is None:  # public: the OpenAPI document, the console's login and assets
            return await handler(request)
        caller = await find_caller(request, store, sessions, clock)
        if caller is None:
            if request.path.startswith("/console"):
                raise web.HTTPSeeOther("/console/login")
            return error(401, "a valid bearer token or console login is needed", bearer=True)
        if not await csrf_ok(request, caller):
            return error(403, "missing or wrong CSRF token", field="csrf")
        if scope == "admin" and caller.scope != "admin":
            return error(403, f"this needs a token with the admin scope, not {caller.scope}")
        request[CALLER] = caller
        return await handler(request)

    return middleware


def error(
    status: int, text: str, *, field: str | None = None, bearer: bool = False
) -> web.Response:
    body: dict[str, str] = {"error": text}
    if field is not None:
        body["field"] = field
    headers = {"WWW-Authenticate": 'Bearer realm="popbox"'} if bearer else None
    return web.json_response(body, status=status, headers=headers)
