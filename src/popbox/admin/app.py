"""The admin listener: the ``/api/v1`` routes and the console on one aiohttp application.

Theory of operation: ``AdminServer`` runs on the event loop of the process that holds
the node's view of its sessions: a single-process server's own (``node/app.py``), or the
supervisor's (``node/supervisor.py``), which asks its workers over the control channel.
It opens no socket until ``start``, which binds every ``[admin] listen`` address (with
HTTPS when ``admin.tls``) and returns them for the ``listening admin HOST:PORT`` lines.

Middlewares, outermost first: security headers on every answer (a strict
Content-Security-Policy: only popbox's own scripts, styles and frames, no inline script;
no framing by other sites; no sniffing; no caching of answers that carry mail), the
mapping of store and validation errors to JSON answers (one place, as
``server/store_errors.py`` is for POP3), and authentication (``admin/auth.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from popbox.admin import routes_ops, routes_users
from popbox.admin.actions import AdminActions, NoSuchMessage
from popbox.admin.auth import authenticate, error
from popbox.admin.console import pages
from popbox.admin.console.login import ConsoleAuth, administrators
from popbox.admin.console.render import CONSOLE, Console, error_page
from popbox.admin.console.sessions import ConsoleSessions
from popbox.admin.stats import Sampler
from popbox.admin.validate import BadRequest
from popbox.config import parse_address
from popbox.server.tls import TlsConfigError
from popbox.store.base import (
    DeliveryRefused,
    StoreError,
    StoreTemporaryError,
    UnknownUser,
    UserExists,
)
from popbox.store.message import MalformedMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    import structlog

    from popbox.admin.node import Node
    from popbox.auth.guard import Guard
    from popbox.auth.passwords import PasswordVerifier
    from popbox.clock import Clock
    from popbox.server.tls import TlsContextHolder
    from popbox.store.base import MailStore

__all__ = ["CSP", "AdminServer"]

STOP_GRACE = 2.0  # seconds requests in progress get when the listener stops

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc.headers)
        raise
    _secure(response.headers)
    return response


def _secure(headers: MutableMapping[str, str]) -> None:
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: under no-referrer a browser's form POST says
    # "Origin: null", and the console's Origin check (admin/auth.py) needs the origin.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    if "frame-ancestors 'self'" not in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "DENY")


# Store and validation errors as JSON answers: (kind, status, text before the message,
# field named).  The first match wins, so subclasses come before their bases.
_ANSWERS: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (UnknownUser, 404, "no such user: ", None),
    (NoSuchMessage, 404, "no such message: ", None),
    (UserExists, 409, "", "name"),
    (MalformedMessage, 400, "the message cannot be delivered: ", "body"),
    (DeliveryRefused, 507, "", None),
    (StoreTemporaryError, 503, "the store is unavailable, try again later: ", None),
    (StoreError, 500, "the store failed: ", None),
)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return _answer(request, 400, str(exc), exc.field)
    except (StoreError, NoSuchMessage, MalformedMessage) as exc:
        for kind, status, prefix, field in _ANSWERS:
            if isinstance(exc, kind):
                return _answer(request, status, f"{prefix}{exc}", field)
        raise
    except web.HTTPNotFound as exc:
        if request.path.startswith("/api/") and exc.content_type != "application/json":
            return error(404, f"no such endpoint: {request.method} {request.path}")
        if request.path.startswith("/console"):
            return error_page(404, f"no such page: {request.path}")
        raise
    except web.HTTPMethodNotAllowed:
        return error(405, f"{request.method} is not allowed on {request.path}")


def _answer(request: web.Request, status: int, text: str, field: str | None) -> web.Response:
    """An error as JSON for the API, as a page (the same text) for the console."""
    if request.path.startswith("/console"):
        return error_page(status, text)
    return error(status, text, field=field)


class AdminServer:
    def __init__(  # noqa: PLR0913 - what the listener serves, each passed down
        self,
        *,
        node: Node,
        store: MailStore,
        log: structlog.typing.FilteringBoundLogger,
        clock: Clock,
        passwords: PasswordVerifier,
        guard: Guard,
        tls: TlsContextHolder | None,
    ) -> None:
        config = node.config.admin
        self._config = config
        self._tls = tls
        self._log = log.bind(listener="admin")
        self.sampler = Sampler(node, store, clock)
        sessions = (
            ConsoleSessions(
                clock, lifetime=config.session_lifetime, idle=config.session_idle, secure=config.tls
            )
            if config.console
            else None
        )
        app = web.Application(
            middlewares=[_security_headers, _errors, authenticate(store, sessions, clock)],
            client_max_size=node.config.lmtp.max_message_size + 64 * 1024,
        )
        actions = AdminActions(store, node, self._log)
        app[routes_users.ACTIONS] = actions
        app[routes_ops.SAMPLER] = self.sampler
        routes_users.add_routes(app)
        routes_ops.add_routes(app)
        if sessions is not None:
            auth = ConsoleAuth(
                store=store,
                passwords=passwords,
                guard=guard,
                clock=clock,
                admins=administrators(node.config),
            )
            app[CONSOLE] = Console(sessions, auth, actions, self.sampler)
            pages.add_routes(app)
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self) -> list[tuple[str, int]]:
        """Bind every ``admin.listen`` address; the addresses bound (port 0 resolved)."""
        # Live protocol streams never end by themselves: at stop they are cancelled.
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE
        )
        if self._config.tls and self._tls is None:
            # Never plain HTTP where HTTPS was asked for (startup.tls_holder makes one).
            raise TlsConfigError("admin.tls: no TLS certificate is loaded for the admin listener")
        await runner.setup()
        self._runner = runner
        ssl_context = self._tls.context if self._config.tls and self._tls is not None else None
        try:
            for address in self._config.listen:
                host, port = parse_address(address, "admin.listen")
                site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
                await site.start()
        except BaseException:
            await self.stop()
            raise
        self.sampler.start()
        bound = [(str(a[0]), int(a[1])) for a in runner.addresses]
        self._log.info("admin_listening", addresses=[f"{h}:{p}" for h, p in bound])
        return bound

    async def stop(self) -> None:
        await self.sampler.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
