"""The admin API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Written out here rather than generated from the handlers, so that it is a statement the
tests hold the server to: every route of the application must be in it with the same
scope and every operation in it must be routed (``tests/admin/test_openapi.py``), every
JSON answer of the API tests is validated against the schema it documents, and request
bodies are checked against those schemas (``admin/schemas.py``) before a handler runs
(``admin/validate.py``).  The README's API table is checked against it as well.
"""

from __future__ import annotations

from typing import Any

from popbox import __version__
from popbox.admin.schemas import SCHEMAS

__all__ = ["document", "operations"]

_ERRORS = {
    "400": "bad JSON, a bad field (named in `field`) or a bad parameter",
    "401": "no valid token",
    "403": "the token's scope does not allow this",
    "404": "no such user, message or session",
    "409": "a user with that name exists",
    "503": "the store is unavailable: try again later",
    "507": "over the mailbox's quota: nothing was stored",
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _op(  # noqa: PLR0913 - one keyword per part of an operation
    summary: str,
    scope: str,
    *,
    ok: tuple[str, str | None] = ("200", None),
    body: str | None = None,
    raw_body: bool = False,
    params: tuple[str, ...] = (),
    query: tuple[tuple[str, dict[str, Any]], ...] = (),
    content: dict[str, Any] | None = None,
    errors: tuple[str, ...] = ("400", "401", "403", "404", "503"),
) -> dict[str, Any]:
    status, schema = ok
    answer: dict[str, Any] = {"description": "success"}
    if content is not None:
        answer["content"] = content
    elif schema is not None:
        answer["content"] = _json(schema)
    operation: dict[str, Any] = {
        "summary": summary,
        "x-scope": scope,
        "security": [{"bearer": []}, {"console": []}],
        "responses": {status: answer}
        | {code: {"description": _ERRORS[code], "content": _json("Error")} for code in errors},
    }
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
    ] + [{"name": n, "in": "query", "required": False, "schema": s} for n, s in query]
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    if raw_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    return operation


_U = ("name",)
_M = ("name", "uid")
_PAGE = (
    ("q", {"type": "string"}),
    ("offset", {"type": "integer", "minimum": 0, "default": 0}),
    ("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
)
_RAW = {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def operations() -> dict[str, dict[str, dict[str, Any]]]:
    """path → method → operation; the ``x-scope`` of each says which token may call it."""
    return {
        "/api/v1/users": {
            "get": _op(
                "List or search users, a page at a time",
                "read",
                ok=("200", "UserPage"),
                query=_PAGE,
            ),
            "post": _op(
                "Add a user",
                "admin",
                ok=("201", "User"),
                body="NewUser",
                errors=("400", "401", "403", "409", "503"),
            ),
        },
        "/api/v1/users/{name}": {
            "get": _op("Show a user", "read", ok=("200", "User"), params=_U),
            "delete": _op("Delete a user and all their mail", "admin", ok=("204", None), params=_U),
        },
        "/api/v1/users/{name}/password": {
            "put": _op(
                "Set a user's password", "admin", ok=("204", None), params=_U, body="Password"
            ),
        },
        "/api/v1/users/{name}/quota": {
            "put": _op(
                "Set (null: clear) a user's quota",
                "admin",
                ok=("200", "User"),
                params=_U,
                body="Quota",
            ),
        },
        "/api/v1/users/{name}/disable": {
            "post": _op(
                "Disable a user and close their sessions",
                "admin",
                ok=("200", "User"),
                params=_U,
                body="Disable",
            ),
        },
        "/api/v1/users/{name}/enable": {
            "post": _op("Enable a disabled user", "admin", ok=("200", "User"), params=_U),
        },
        "/api/v1/users/{name}/messages": {
            "get": _op(
                "List a mailbox",
                "read",
                ok=("200", None),
                params=_U,
                content={
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Message"},
                        }
                    }
                },
            ),
            "post": _op(
                "Deliver a message (quota, normalisation, durability as LMTP)",
                "admin",
                ok=("201", "Message"),
                params=_U,
                raw_body=True,
                errors=("400", "401", "403", "404", "503", "507"),
            ),
        },
        "/api/v1/users/{name}/messages/{uid}": {
            "get": _op(
                "One message: listing, parsed headers, text and HTML parts",
                "read",
                ok=("200", "MessageDetail"),
                params=_M,
            ),
            "delete": _op("Delete one message", "admin", ok=("204", None), params=_M),
        },
        "/api/v1/users/{name}/messages/{uid}/raw": {
            "get": _op(
                "One message as RETR sends it (before byte-stuffing)",
                "read",
                ok=("200", None),
                params=_M,
                content=_RAW,
            ),
        },
        "/api/v1/users/{name}/sessions": {
            "delete": _op(
                "Close every session of a user", "admin", ok=("200", "Kicked"), params=_U
            ),
        },
        "/api/v1/users/{name}/protocol": {
            "get": _op(
                "The user's protocol lines, live (server-sent events)",
                "read",
                ok=("200", None),
                params=_U,
                content=_SSE,
            ),
        },
        "/api/v1/sessions": {
            "get": _op(
                "Live POP3 sessions of every worker",
                "read",
                ok=("200", None),
                query=(("user", {"type": "string"}),),
                content={
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Session"},
                        }
                    }
                },
            ),
        },
        "/api/v1/sessions/{id}": {
            "delete": _op("Close one session", "admin", ok=("200", "Kicked"), params=("id",)),
        },
        "/api/v1/config": {
            "get": _op(
                "The configuration in force, as TOML",
                "read",
                ok=("200", "Config"),
                errors=("401", "403", "503"),
            ),
        },
        "/api/v1/connection-settings": {
            "get": _op(
                "What clients are told to connect to (Internal/ExternalConnectionSettings)",
                "read",
                ok=("200", "ConnectionSettings"),
                errors=("401", "403", "503"),
            ),
        },
        "/api/v1/config/check": {
            "get": _op(
                "Check the configuration file as a reload would read it",
                "read",
                ok=("200", "ConfigCheck"),
                errors=("401", "403", "503"),
            ),
        },
        "/api/v1/reload": {
            "post": _op(
                "Reload configuration and certificate (as SIGHUP)",
                "admin",
                ok=("200", "Reloaded"),
                errors=("401", "403", "503"),
            ),
        },
        "/api/v1/stats": {
            "get": _op(
                "Counters of the node and the last hour",
                "read",
                ok=("200", "Stats"),
                errors=("401", "403", "503"),
            ),
        },
        "/api/v1/health": {
            "get": _op(
                "Whether the node serves",
                "read",
                ok=("200", "Health"),
                errors=("401", "403", "503"),
            ),
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "popbox admin API",
            "version": __version__,
            "description": "Users, mailboxes, live sessions and operations of a popbox node.",
        },
        "servers": [{"url": "/"}],
        "paths": operations(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "popbox admin token create",
                },
                "console": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "popbox_console",
                    "description": "console login; state changes need the X-CSRF-Token header",
                },
            },
        },
    }
