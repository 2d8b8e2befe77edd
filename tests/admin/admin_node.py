"""Helpers of the admin API tests: the node under test, its tokens, an HTTP call, and
the check that a reply is what the OpenAPI document says."""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema

from popbox.admin import tokens
from popbox.admin.openapi import document
from popbox.store import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from popbox_servers import ServeProcess

HTTP_TIMEOUT = 15.0
_DOC = document()


def issue_token(data_dir: Path, scope: str, lifetime: float | None = None) -> str:
    """A token in the store; with ``lifetime``, one that expired in 1970."""

    async def run() -> str:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            token, record = tokens.issue(scope, now=0.0, lifetime=lifetime)
            await store.admin.add_token(record)
            return token
        finally:
            await store.close()

    return asyncio.run(run())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Admin:
    """The running node: its ports, an admin and a read token, and an HTTP helper."""

    process: ServeProcess
    port: int
    pop3_port: int
    admin_token: str
    read_token: str
    expired_token: str
    data_dir: Path

    def call(  # noqa: PLR0913 - an HTTP request has this many parts
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        token: str | None = "admin",  # noqa: S107 - which of the fixture's tokens
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            secret = {"admin": self.admin_token, "read": self.read_token}.get(token, token)
            sent["Authorization"] = f"Bearer {secret}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, body=data, headers=sent)
            answer = conn.getresponse()
            return Reply(answer.status, dict(answer.getheaders()), answer.read())
        finally:
            conn.close()


def check_documented(method: str, template: str, reply: Reply) -> None:
    """The reply's status is documented for the operation, and its JSON fits the schema."""
    operation = _DOC["paths"][template][method.lower()]
    documented = operation["responses"].get(str(reply.status))
    assert documented is not None, f"{method} {template} answered {reply.status}, not documented"
    content = documented.get("content", {}).get("application/json")
    if content is not None:
        schema = {**content["schema"], "components": _DOC["components"]}
        jsonschema.validate(reply.json(), schema)
