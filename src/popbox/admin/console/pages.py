"""Console pages: login, dashboard, live sessions with kick, a user's live protocol log.

Every change is a plain HTML form POST answered by a redirect (post/redirect/get), so
the console works without JavaScript; the only script is ``static/log.js``, which shows
the protocol log as it streams (from the API's server-sent events, with the login's
cookie).  The user and mailbox pages are in ``pages_users.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from popbox.admin.actions import Actor
from popbox.admin.auth import CALLER, requires, same_origin
from popbox.admin.console import pages_users
from popbox.admin.console.chart import chart
from popbox.admin.console.render import (
    CONSOLE,
    actor_of,
    form_text,
    page,
    render,
    see_other,
)
from popbox.admin.stats import totals

__all__ = ["add_routes"]

STATIC = Path(__file__).parent / "static"
_SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


async def login_form(request: web.Request) -> web.StreamResponse:
    if request.app[CONSOLE].sessions.find(request) is not None:
        return web.Response(status=303, headers={"Location": "/console"})
    return _login_page()


def _login_page(error: str = "", status: int = 200) -> web.Response:
    text = render("login.html", error=error)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check the password; on success a new session (never the one the browser brought)."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="a login form of another site")
    console = request.app[CONSOLE]
    name, password = await form_text(request, "name"), await form_text(request, "password")
    peer = request.remote or "-"
    refusal = await console.auth.refusal(peer, name, password)
    if refusal is not None:
        # The name is what a stranger typed: no line breaks or controls into the log.
        shown = "".join(c if c.isprintable() else "?" for c in name[:64])
        console.actions.audit(Actor(f"console:{shown}", peer), "console.login_failed")
        return _login_page(refusal, status=401)
    response = web.Response(status=303, headers={"Location": "/console"})
    console.sessions.start(request, response, name)
    console.actions.audit(Actor(f"console:{name}", peer), "console.login")
    return response


@requires("admin")
async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    console.actions.audit(actor_of(request), "console.logout")
    response = web.Response(status=303, headers={"Location": "/console/login"})
    console.sessions.end(request, response)
    return response


@requires("admin")
async def dashboard(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    current = totals(await console.actions.node.metrics())
    sampler = console.sampler
    history = sampler.history()
    minute = sampler.this_minute(current)
    entries = [*history, minute] if minute is not None else history
    latest = entries[-1] if entries else None
    return page(
        request,
        "dashboard.html",
        current=current,
        latest=latest,
        store_octets=sampler.store_octets,
        users=sampler.users,
        chart=chart(entries, minute["at"] if minute else 0.0),
    )


@requires("admin")
async def sessions(request: web.Request) -> web.Response:
    found = await request.app[CONSOLE].actions.node.sessions()
    user = request.query.get("user", "")
    shown = [s for s in found if not user or s["user"] == user]
    return page(request, "sessions.html", sessions=shown, user=user)


@requires("admin")
async def kick(request: web.Request) -> web.Response:
    session = request.match_info["id"]
    if _SESSION_ID.fullmatch(session) is None:
        raise web.HTTPBadRequest(text=f"not a session id: {session!r}")
    kicked = await request.app[CONSOLE].actions.kick(
        request[CALLER].actor, session=session, user=None
    )
    notice = f"session {session} closed" if kicked else f"session {session} had already ended"
    return see_other(request, "/console/sessions", notice)


@requires("admin")
async def protocol_log(request: web.Request) -> web.Response:
    return page(request, "log.html", name=request.match_info["name"])


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/login", login_form)
    r.add_post("/console/login", login_submit)
    r.add_post("/console/logout", logout)
    r.add_get("/console", dashboard)
    r.add_get("/console/sessions", sessions)
    r.add_post("/console/sessions/{id}/kick", kick)
    r.add_get("/console/users/{name}/log", protocol_log)
    r.add_static("/console/static", STATIC, append_version=False)
    pages_users.add_routes(app)
