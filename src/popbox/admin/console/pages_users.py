"""Console pages of users and mailboxes: search, add, disable/enable, messages, one message.

A message is shown in three safe forms: its headers and text part as escaped text in
the page, its HTML part only inside a sandboxed iframe (``sandbox`` without
``allow-scripts``) whose document comes from its own route with a Content-Security-Policy
of its own (no script, no network, inline styles and ``data:`` images only, and itself a
CSP sandbox, should it be opened on its own), and the raw source as ``text/plain``.
A message id in a path is a uid: digits only, checked before anything is looked up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from popbox.admin.auth import requires
from popbox.admin.console.render import CONSOLE, actor_of, form_text, page, see_other
from popbox.admin.validate import BadRequest, checked, path_uid, query_int
from popbox.store.base import UserExists

if TYPE_CHECKING:
    from popbox.admin.actions import AdminActions

__all__ = ["HTML_PART_CSP", "add_routes"]

PAGE_SIZE = 50
MIB = 1024 * 1024
HTML_PART_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)


def _actions(request: web.Request) -> AdminActions:
    return request.app[CONSOLE].actions


def _user_path(name: str) -> str:
    return "/console/users/" + quote(name, safe="")


@requires("admin")
async def users(request: web.Request) -> web.Response:
    return await _users_page(request)


async def _users_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    query = request.query.get("q", "")[:200]
    offset = query_int(request, "offset", 0, 0, 10**9)
    found = await _actions(request).users_page(query, offset, PAGE_SIZE)
    return page(
        request,
        "users.html",
        status=status,
        query=query,
        found=found,
        page_size=PAGE_SIZE,
        error=error,
        user_path=_user_path,
    )


@requires("admin")
async def add_user(request: web.Request) -> web.Response:
    name = await form_text(request, "name")
    password = await form_text(request, "password")
    quota_text = (await form_text(request, "quota_mib")).strip()
    try:
        quota = _quota(quota_text)
        body: dict[str, object] = {"name": name, "password": password}
        checked(body if quota is None else {**body, "quota": quota}, "NewUser")
        await _actions(request).add_user(actor_of(request), name, password, quota)
    except (BadRequest, UserExists) as exc:
        text = f"user {name} exists already" if isinstance(exc, UserExists) else str(exc)
        return await _users_page(request, f"not added: {text}", status=400)
    return see_other(request, "/console/users", f"user {name} added")


def _quota(text: str) -> int | None:
    """The form's quota in MiB as octets; empty: the server's default."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise BadRequest("quota: a whole number of MiB", "quota")
    return int(text) * MIB


@requires("admin")
async def disable(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    reason = (await form_text(request, "reason"))[:200]
    checked({"reason": reason}, "Disable")
    await _actions(request).set_disabled(actor_of(request), name, reason)
    return see_other(request, "/console/users", f"user {name} disabled")


@requires("admin")
async def enable(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _actions(request).set_disabled(actor_of(request), name, None)
    return see_other(request, "/console/users", f"user {name} enabled")


@requires("admin")
async def kick_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kicked = await _actions(request).kick(actor_of(request), session=None, user=name)
    return see_other(request, "/console/sessions", f"{kicked} session(s) of {name} closed")


@requires("admin")
async def mailbox(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    actions = _actions(request)
    view = await actions.user_view(name)
    messages = await actions.messages(name)
    return page(request, "mailbox.html", user=view, messages=messages, path=_user_path(name))


@requires("admin")
async def message(request: web.Request) -> web.Response:
    name, uid = request.match_info["name"], path_uid(request)
    detail = await _actions(request).message(name, uid)
    base = f"{_user_path(name)}/messages/{uid}"
    return page(request, "message.html", name=name, message=detail, base=base)


@requires("admin")
async def html_part(request: web.Request) -> web.Response:
    """The HTML part alone, for the sandboxed iframe, under its own strict policy."""
    name, uid = request.match_info["name"], path_uid(request)
    detail = await _actions(request).message(name, uid)
    body = detail["html"]
    if body is None:
        body = "<p>This message has no HTML part.</p>"
    # The text is the sender's markup on purpose: only this route serves it, sandboxed.
    headers = {"Content-Security-Policy": HTML_PART_CSP, "X-Frame-Options": "SAMEORIGIN"}
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=headers)


@requires("admin")
async def raw(request: web.Request) -> web.Response:
    name, uid = request.match_info["name"], path_uid(request)
    wire = await _actions(request).raw(name, uid)
    # text/plain with nosniff (set for every answer): a browser shows it, never runs it.
    return web.Response(
        text=wire.decode("utf-8", "replace"),
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"},
    )


@requires("admin")
async def delete_message(request: web.Request) -> web.Response:
    name, uid = request.match_info["name"], path_uid(request)
    await _actions(request).delete_message(actor_of(request), name, uid)
    return see_other(request, _user_path(name), f"message {uid} deleted")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/users", users)
    r.add_post("/console/users", add_user)
    r.add_post("/console/users/{name}/disable", disable)
    r.add_post("/console/users/{name}/enable", enable)
    r.add_post("/console/users/{name}/kick", kick_user)
    r.add_get("/console/users/{name}", mailbox)
    r.add_get("/console/users/{name}/messages/{uid}", message)
    r.add_get("/console/users/{name}/messages/{uid}/html", html_part)
    r.add_get("/console/users/{name}/messages/{uid}/raw", raw)
    r.add_post("/console/users/{name}/messages/{uid}/delete", delete_message)
