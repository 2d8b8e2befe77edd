"""``/api/v1``: sessions, the live protocol log, configuration, reload, stats, health."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

from aiohttp import web

from popbox.admin.auth import CALLER, error, requires
from popbox.admin.openapi import document
from popbox.admin.routes_users import ACTIONS
from popbox.admin.validate import BadRequest
from popbox.config import ConfigError, dump, load, warnings
from popbox.config.connection_settings import advertised

if TYPE_CHECKING:
    from popbox.admin.actions import AdminActions
    from popbox.admin.stats import Sampler

__all__ = ["SAMPLER", "add_routes"]

SAMPLER: web.AppKey[Sampler] = web.AppKey("popbox_sampler")
KEEPALIVE = 15.0  # seconds between SSE comments, so proxies keep an idle stream open
_SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_DSN_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def _actions(request: web.Request) -> AdminActions:
    return request.app[ACTIONS]


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())


@requires("read")
async def sessions(request: web.Request) -> web.Response:
    found = await _actions(request).node.sessions()
    user = request.query.get("user")
    return web.json_response([s for s in found if user is None or s["user"] == user])


@requires("admin")
async def kick_session(request: web.Request) -> web.Response:
    session = request.match_info["id"]
    if _SESSION_ID.fullmatch(session) is None:
        raise BadRequest(f"id: {session!r} is not a session id", "id")
    kicked = await _actions(request).kick(request[CALLER].actor, session=session, user=None)
    if not kicked:
        return error(404, f"no such session: {session}")
    return web.json_response({"kicked": kicked})


@requires("admin")
async def kick_user(request: web.Request) -> web.Response:
    user = request.match_info["name"]
    kicked = await _actions(request).kick(request[CALLER].actor, session=None, user=user)
    return web.json_response({"kicked": kicked})


@requires("read")
async def protocol(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` JSON line per protocol line, until the client goes."""
    user = request.match_info["name"]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    async with _actions(request).node.watch(user) as subscription:
        await response.prepare(request)
        await response.write(b": watching\n\n")
        dropped = 0
        while True:
            try:
                line = await asyncio.wait_for(subscription.lines.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if subscription.dropped != dropped:
                line = {**line, "dropped": subscription.dropped - dropped}
                dropped = subscription.dropped
            await response.write(b"data: " + json.dumps(line).encode() + b"\n\n")


@requires("read")
async def config_show(request: web.Request) -> web.Response:
    # A PostgreSQL DSN may carry a password: not for a read-scope token to see.
    text = _DSN_PASSWORD.sub(r"\1***@", dump(_actions(request).node.config))
    return web.json_response({"toml": text})


@requires("read")
async def connection_settings(request: web.Request) -> web.Response:
    """Set-PopSettings Internal/ExternalConnectionSettings: what clients are told to use."""
    settings = advertised(_actions(request).node.config.pop3)
    return web.json_response(
        {
            kind: [{"host": s.host, "port": s.port, "encryption": s.encryption} for s in entries]
            for kind, entries in settings.items()
        }
    )


@requires("read")
async def config_check(request: web.Request) -> web.Response:
    path = _actions(request).node.config_path
    if path is None:
        return web.json_response(
            {"valid": True, "warnings": warnings(_actions(request).node.config), "error": None}
        )
    try:
        config = await asyncio.to_thread(load, path, required=True)
    except ConfigError as exc:
        return web.json_response({"valid": False, "warnings": [], "error": str(exc)})
    return web.json_response({"valid": True, "warnings": warnings(config), "error": None})


@requires("admin")
async def reload(request: web.Request) -> web.Response:
    return web.json_response({"reloaded": await _actions(request).reload(request[CALLER].actor)})


@requires("read")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SAMPLER].now())


@requires("read")
async def health(request: web.Request) -> web.Response:
    ok, text = await _actions(request).node.health()
    return web.json_response({"ok": ok, "text": text})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_get("/api/v1/sessions", sessions)
    r.add_delete("/api/v1/sessions/{id}", kick_session)
    r.add_delete("/api/v1/users/{name}/sessions", kick_user)
    r.add_get("/api/v1/users/{name}/protocol", protocol)
    r.add_get("/api/v1/config", config_show)
    r.add_get("/api/v1/connection-settings", connection_settings)
    r.add_get("/api/v1/config/check", config_check)
    r.add_post("/api/v1/reload", reload)
    r.add_get("/api/v1/stats", stats)
    r.add_get("/api/v1/health", health)
