"""``/api/v1/users``: users and their mailboxes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from popbox.admin.auth import CALLER, requires
from popbox.admin.validate import BadRequest, json_body, path_uid, query_int

if TYPE_CHECKING:
    from popbox.admin.actions import AdminActions

__all__ = ["ACTIONS", "add_routes"]

ACTIONS: web.AppKey[AdminActions] = web.AppKey("popbox_actions")
PAGE_MAX = 1000


def _actions(request: web.Request) -> AdminActions:
    return request.app[ACTIONS]


@requires("read")
async def list_users(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    offset = query_int(request, "offset", 0, 0, 10**9)
    limit = query_int(request, "limit", 100, 1, PAGE_MAX)
    return web.json_response(await _actions(request).users_page(query, offset, limit))


@requires("admin")
async def add_user(request: web.Request) -> web.Response:
    body = await json_body(request, "NewUser")
    view = await _actions(request).add_user(
        request[CALLER].actor, body["name"], body["password"], body.get("quota")
    )
    return web.json_response(view, status=201)


@requires("read")
async def show_user(request: web.Request) -> web.Response:
    return web.json_response(await _actions(request).user_view(request.match_info["name"]))


@requires("admin")
async def delete_user(request: web.Request) -> web.Response:
    await _actions(request).delete_user(request[CALLER].actor, request.match_info["name"])
    return web.Response(status=204)


@requires("admin")
async def set_password(request: web.Request) -> web.Response:
    body = await json_body(request, "Password")
    name = request.match_info["name"]
    await _actions(request).set_password(request[CALLER].actor, name, body["password"])
    return web.Response(status=204)


@requires("admin")
async def set_quota(request: web.Request) -> web.Response:
    body = await json_body(request, "Quota")
    name = request.match_info["name"]
    return web.json_response(
        await _actions(request).set_quota(request[CALLER].actor, name, body["quota"])
    )


@requires("admin")
async def disable(request: web.Request) -> web.Response:
    body = await json_body(request, "Disable") if await request.read() else {}
    reason = body.get("reason", "")
    name = request.match_info["name"]
    return web.json_response(
        await _actions(request).set_disabled(request[CALLER].actor, name, reason)
    )


@requires("admin")
async def enable(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    view = await _actions(request).set_disabled(request[CALLER].actor, name, None)
    return web.json_response(view)


@requires("read")
async def list_messages(request: web.Request) -> web.Response:
    return web.json_response(await _actions(request).messages(request.match_info["name"]))


@requires("admin")
async def inject(request: web.Request) -> web.Response:
    raw = await request.read()
    if not raw:
        raise BadRequest("the body must be the message (Content-Type: message/rfc822)", "body")
    name = request.match_info["name"]
    listing = await _actions(request).inject(request[CALLER].actor, name, raw)
    return web.json_response(listing, status=201)


@requires("read")
async def show_message(request: web.Request) -> web.Response:
    uid = path_uid(request)
    return web.json_response(await _actions(request).message(request.match_info["name"], uid))


@requires("read")
async def raw_message(request: web.Request) -> web.Response:
    uid = path_uid(request)
    raw = await _actions(request).raw(request.match_info["name"], uid)
    # Served as a download, never rendered: the bytes are whatever a sender wrote.
    return web.Response(
        body=raw,
        content_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{uid}.eml"'},
    )


@requires("admin")
async def delete_message(request: web.Request) -> web.Response:
    uid = path_uid(request)
    await _actions(request).delete_message(request[CALLER].actor, request.match_info["name"], uid)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/users", list_users)
    r.add_post("/api/v1/users", add_user)
    r.add_get("/api/v1/users/{name}", show_user)
    r.add_delete("/api/v1/users/{name}", delete_user)
    r.add_put("/api/v1/users/{name}/password", set_password)
    r.add_put("/api/v1/users/{name}/quota", set_quota)
    r.add_post("/api/v1/users/{name}/disable", disable)
    r.add_post("/api/v1/users/{name}/enable", enable)
    r.add_get("/api/v1/users/{name}/messages", list_messages)
    r.add_post("/api/v1/users/{name}/messages", inject)
    r.add_get("/api/v1/users/{name}/messages/{uid}", show_message)
    r.add_delete("/api/v1/users/{name}/messages/{uid}", delete_message)
    r.add_get("/api/v1/users/{name}/messages/{uid}/raw", raw_message)
