"""Request bodies and parameters checked before a handler acts: 400 naming the field.

JSON bodies are checked against the OpenAPI document's own schemas (``admin/schemas.py``)
with jsonschema, so the document says exactly what the server accepts.  Everything is
checked before anything is changed: a bad request is never half-applied.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import jsonschema

from popbox.admin.schemas import SCHEMAS

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["BadRequest", "checked", "json_body", "path_uid", "query_int"]

_VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


class BadRequest(ValueError):
    """A request the API refuses with 400; ``field`` names the culprit when there is one."""

    def __init__(self, text: str, field: str | None = None) -> None:
        super().__init__(text)
        self.field = field


async def json_body(request: web.Request, schema: str) -> dict[str, Any]:
    """The request's JSON object, valid against ``SCHEMAS[schema]``; else ``BadRequest``."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return checked(body, schema)


def checked(body: dict[str, Any], schema: str) -> dict[str, Any]:
    """``body`` itself when it is valid against ``SCHEMAS[schema]``; else ``BadRequest``."""
    error = jsonschema.exceptions.best_match(_VALIDATORS[schema].iter_errors(body))
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path)
        if not field and error.validator == "required":
            field = str(error.message).split("'")[1]
        if not field and error.validator == "additionalProperties":
            field = str(error.message).split("'")[1]
        raise BadRequest(f"{field or 'body'}: {error.message}", field or None)
    return body


def path_uid(request: web.Request) -> int:
    """The ``{uid}`` path parameter: ASCII digits only (no path, no sign, no dots)."""
    text = request.match_info["uid"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) == 0:
        raise BadRequest(f"uid: {text!r} is not a message uid (a positive whole number)", "uid")
    return int(text)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadRequest(f"{name}: must be a whole number from {low} to {high}", name)
    return int(text)
