"""The OpenAPI document and the application agree: every route is documented with the
scope it enforces, and every documented operation is routed."""

from __future__ import annotations

import jsonschema
import pytest

from popbox.admin.app import AdminServer
from popbox.admin.auth import SCOPE_KEY
from popbox.admin.node import LocalNode
from popbox.admin.openapi import document
from popbox.config import from_mapping
from popbox.node import app as node_app
from popbox.store.memory import MemoryStore

METHODS = {"GET", "POST", "PUT", "DELETE"}


@pytest.fixture
async def admin_app(tmp_path):
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "pop3": {"listen": [], "tls_listen": []},
            "lmtp": {"listen": []},
            "admin": {"listen": ["127.0.0.1:0"]},
        }
    )
    context = await node_app.build_context(config, store=MemoryStore())
    server = AdminServer(
        node=LocalNode(context, None),
        store=context.store,
        log=context.log,
        clock=context.clock,
        passwords=context.passwords,
        guard=context.guard,
        tls=None,
    )
    return server.app


def _routes(app) -> dict[tuple[str, str], str | None]:
    found = {}
    for route in app.router.routes():
        path = route.resource.canonical
        if route.method in METHODS and path.startswith("/api/"):
            found[(route.method.lower(), path)] = getattr(route.handler, SCOPE_KEY, None)
    return found


async def test_every_route_is_documented_and_every_operation_routed(admin_app):
    doc = document()
    documented = {
        (method, path): operation["x-scope"]
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    }
    routed = _routes(admin_app)
    public = {("get", "/api/v1/openapi.json")}
    assert {key: scope for key, scope in routed.items() if key not in public} == documented
    assert routed[("get", "/api/v1/openapi.json")] is None  # the document itself is public
    for (method, path), scope in documented.items():
        # Only GET may be called with a read token: nothing that changes state.
        assert scope == ("read" if method == "get" else "admin"), path


def test_the_document_is_valid_openapi_3_1_json_schema():
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs = {
        value.rsplit("/", 1)[-1]
        for value in _walk(doc["paths"])
        if isinstance(value, str) and value.startswith("#/components/schemas/")
    }
    assert refs <= doc["components"]["schemas"].keys()


def _walk(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
    else:
        yield node
