"""What every console page shares: the Jinja environment, the page context, form reading.

Templates are rendered with autoescaping on for everything (not only for ``.html``
names), so a subject, a user name or a header value is always text, never markup; the
templates never use ``|safe``.  Every page gets the login's CSRF token for its forms and
the one-line notice a previous POST left (post/redirect/get: a reload never repeats a
change).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from popbox.admin.actions import Actor
from popbox.admin.auth import CALLER, Caller

if TYPE_CHECKING:
    from popbox.admin.actions import AdminActions
    from popbox.admin.console.login import ConsoleAuth
    from popbox.admin.console.sessions import ConsoleSessions, Login
    from popbox.admin.stats import Sampler

__all__ = ["CONSOLE", "Console", "error_page", "form_text", "login_of", "page", "see_other"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("popbox.admin.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the page, never shows ""
    trim_blocks=True,
    lstrip_blocks=True,
)
FORM_FIELD_MAX = 1024  # characters of one form field the console reads


@dataclass(frozen=True, slots=True)
class Console:
    """The console's parts, kept on the application."""

    sessions: ConsoleSessions
    auth: ConsoleAuth
    actions: AdminActions
    sampler: Sampler


CONSOLE: web.AppKey[Console] = web.AppKey("popbox_console", Console)


def octets(value: int | None) -> str:
    """1536 → "1.5 KiB": sizes as people read them."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(stamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV.filters["octets"] = octets
_ENV.filters["when"] = when


def login_of(request: web.Request) -> Login:
    """The console login of a request the auth middleware let through."""
    # A bearer token passes the middleware too; console pages are for console logins.
    caller: Caller | None = request.get(CALLER)
    login = None if caller is None else caller.login
    if login is None:
        raise web.HTTPSeeOther("/console/login")
    return login


def actor_of(request: web.Request) -> Actor:
    return Actor(f"console:{login_of(request).user}", request.remote or "-")


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A console page for the logged-in user; shows (and clears) the login's notice."""
    login = login_of(request)
    notice, login.notice = login.notice, ""
    text = render(template, me=login.user, csrf=login.csrf, notice=notice, **context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(request: web.Request, location: str, notice: str = "") -> web.Response:
    """After a POST: back to a page (303), with a notice for it."""
    if notice:
        login_of(request).notice = notice
    return web.Response(status=303, headers={"Location": location})


def error_page(status: int, text: str) -> web.Response:
    body = render("error.html", status=status, text=text)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


async def form_text(request: web.Request, name: str) -> str:
    """One field of a posted form, as text of at most ``FORM_FIELD_MAX`` characters."""
    value = (await request.post()).get(name, "")
    return value[:FORM_FIELD_MAX] if isinstance(value, str) else ""
