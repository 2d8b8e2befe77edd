"""The admin API's JSON schemas: the ``components/schemas`` of its OpenAPI document.

Each request body and each JSON answer of the API has its schema here, by name; the
document's operations refer to them as ``#/components/schemas/NAME``
(``admin/openapi.py``).  Request bodies are checked against them before a handler runs
(``admin/validate.py``), and the API tests validate every JSON answer against the
schema its operation documents.

Apart from the document because they are what the server itself enforces: the validator
needs the schemas, not the operations, which only the served document and the tests
read.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMAS"]

_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\s/\\\\]+$"}
_PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024}
_QUOTA = {"type": ["integer", "null"], "minimum": 0}
_TIME = {"type": "number", "description": "POSIX seconds"}


_SESSION_FIELDS = [
    "id",
    "worker",
    "user",
    "peer",
    "mechanism",
    "tls",
    "since",
    "commands",
    "octets_in",
    "octets_out",
]
_STATS_FIELDS = [
    "connections_open",
    "connections",
    "logins",
    "login_failures",
    "deliveries",
    "store_octets",
    "users",
    "history",
]


_LISTING = ["uid", "uidl", "size", "received_at", "retrieved_at"]
_LISTING_PROPERTIES: dict[str, Any] = {
    "uid": {"type": "integer"},
    "uidl": {"type": "string"},
    "size": {"type": "integer", "description": "exact RFC 822 size, as LIST reports it"},
    "received_at": _TIME,
    "retrieved_at": {"type": ["number", "null"], "description": "first RETR; null: never"},
}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    },
    "NewUser": _object(["name", "password"], name=_NAME, password=_PASSWORD, quota=_QUOTA),
    "Password": _object(["password"], password=_PASSWORD),
    "Quota": _object(["quota"], quota=_QUOTA),
    "Disable": _object([], reason={"type": "string", "maxLength": 200, "pattern": "^[ -~]*$"}),
    "User": _object(
        ["name", "quota", "effective_quota", "used", "messages", "disabled", "disabled_reason"],
        name={"type": "string"},
        quota=_QUOTA,
        effective_quota=_QUOTA,
        used={"type": "integer"},
        messages={"type": "integer"},
        disabled={"type": "boolean"},
        disabled_reason={"type": ["string", "null"]},
    ),
    "UserPage": _object(
        ["total", "offset", "limit", "users"],
        total={"type": "integer"},
        offset={"type": "integer"},
        limit={"type": "integer"},
        users={"type": "array", "items": {"$ref": "#/components/schemas/User"}},
    ),
    "ConnectionSettings": _object(
        ["internal", "external"],
        internal={"type": "array", "items": {"$ref": "#/components/schemas/ConnectionSetting"}},
        external={"type": "array", "items": {"$ref": "#/components/schemas/ConnectionSetting"}},
    ),
    "ConnectionSetting": _object(
        ["host", "port", "encryption"],
        host={"type": "string"},
        port={"type": "integer", "minimum": 1, "maximum": 65535},
        encryption={"enum": ["SSL", "TLS", ""]},
    ),
    "Message": _object(_LISTING, **_LISTING_PROPERTIES),
    "MessageDetail": _object(
        [*_LISTING, "headers", "text", "html"],
        **_LISTING_PROPERTIES,
        headers={
            "type": "array",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        },
        text={"type": ["string", "null"]},
        html={"type": ["string", "null"]},
    ),
    "Session": _object(
        _SESSION_FIELDS,
        id={"type": "string"},
        worker={"type": "integer"},
        user={"type": ["string", "null"]},
        peer={"type": "string"},
        mechanism={"type": ["string", "null"]},
        tls={"type": ["string", "null"], "description": "TLS version, e.g. TLSv1.3"},
        since=_TIME,
        commands={"type": "integer"},
        octets_in={"type": "integer"},
        octets_out={"type": "integer"},
    ),
    "Kicked": _object(["kicked"], kicked={"type": "integer"}),
    "Stats": _object(
        _STATS_FIELDS,
        connections_open={"type": "integer"},
        connections={"type": "integer"},
        logins={"type": "integer"},
        login_failures={"type": "integer"},
        deliveries={"type": "integer"},
        store_octets={"type": "integer"},
        users={"type": "integer"},
        history={
            "type": "array",
            "description": "one sample per minute of the last hour, oldest first",
            "items": _object(
                ["at", "connections_open", "logins", "login_failures", "deliveries"],
                at=_TIME,
                connections_open={"type": "integer"},
                logins={"type": "integer"},
                login_failures={"type": "integer"},
                deliveries={"type": "integer"},
            ),
        },
    ),
    "Health": _object(["ok", "text"], ok={"type": "boolean"}, text={"type": "string"}),
    "Config": _object(["toml"], toml={"type": "string"}),
    "ConfigCheck": _object(
        ["valid", "warnings", "error"],
        valid={"type": "boolean"},
        warnings={"type": "array", "items": {"type": "string"}},
        error={"type": ["string", "null"]},
    ),
    "Reloaded": _object(["reloaded"], reloaded={"type": "boolean"}),
}
