"""The admin API over real HTTP against ``popbox serve`` with two workers.

Every answer checked here is also checked against the OpenAPI document: its status must
be documented for the operation and its JSON must fit the documented schema.
"""

from __future__ import annotations

import http.client
import json
import poplib
import select
import threading
import time

import pytest
from admin_node import HTTP_TIMEOUT, check_documented

from popbox.store.message import normalise

POP_TIMEOUT = 15.0


def _pop(admin, user="alice", password="alice secret") -> poplib.POP3:  # noqa: S107
    client = poplib.POP3("127.0.0.1", admin.pop3_port, timeout=POP_TIMEOUT)
    try:
        client.user(user)
        client.pass_(password)
    except BaseException:
        client.close()
        raise
    return client


def _call(admin, method, path, template, body=None, **kwargs):
    reply = admin.call(method, path, body, **kwargs)
    check_documented(method, template, reply)
    return reply


def test_users_are_added_shown_searched_and_paged(admin):
    for name in ("carol", "carl", "dave"):
        reply = _call(
            admin,
            "POST",
            "/api/v1/users",
            "/api/v1/users",
            {"name": name, "password": "pw " + name},
        )
        assert reply.status == 201
        assert reply.json()["name"] == name
    page = _call(admin, "GET", "/api/v1/users?q=CAR&limit=1", "/api/v1/users").json()
    assert page["total"] == 2
    assert [u["name"] for u in page["users"]] == ["carl"]
    page = _call(admin, "GET", "/api/v1/users?q=car&offset=1&limit=1", "/api/v1/users").json()
    assert [u["name"] for u in page["users"]] == ["carol"]
    alice = _call(admin, "GET", "/api/v1/users/alice", "/api/v1/users/{name}").json()
    assert alice["messages"] >= 1
    assert alice["disabled"] is False


def test_password_quota_disable_enable_and_delete_take_effect(admin):
    _call(admin, "POST", "/api/v1/users", "/api/v1/users", {"name": "erin", "password": "old pw"})
    reply = _call(
        admin,
        "PUT",
        "/api/v1/users/erin/password",
        "/api/v1/users/{name}/password",
        {"password": "new pw"},
    )
    assert reply.status == 204
    _pop(admin, "erin", "new pw").quit()
    with pytest.raises(poplib.error_proto):
        _pop(admin, "erin", "old pw")
    view = _call(
        admin, "PUT", "/api/v1/users/erin/quota", "/api/v1/users/{name}/quota", {"quota": 1000}
    ).json()
    assert view["quota"] == 1000
    assert view["effective_quota"] == 1000
    view = _call(
        admin,
        "POST",
        "/api/v1/users/erin/disable",
        "/api/v1/users/{name}/disable",
        {"reason": "on leave"},
    ).json()
    assert view["disabled"] is True
    assert view["disabled_reason"] == "on leave"
    with pytest.raises(poplib.error_proto, match=r"SYS/PERM.*on leave"):
        _pop(admin, "erin", "new pw")
    with pytest.raises(poplib.error_proto, match="AUTH"):  # a wrong password learns nothing
        _pop(admin, "erin", "wrong")
    _call(admin, "POST", "/api/v1/users/erin/enable", "/api/v1/users/{name}/enable")
    _pop(admin, "erin", "new pw").quit()
    assert _call(admin, "DELETE", "/api/v1/users/erin", "/api/v1/users/{name}").status == 204
    assert _call(admin, "GET", "/api/v1/users/erin", "/api/v1/users/{name}").status == 404


def test_bad_requests_name_the_field_and_change_nothing(admin):
    cases = [
        (b"{not json", None),
        (json.dumps({"name": "frank", "password": "pw", "quota": "big"}).encode(), "quota"),
        (json.dumps({"name": "frank"}).encode(), "password"),
        (json.dumps({"name": "frank", "password": "pw", "admin": True}).encode(), "admin"),
        (json.dumps({"name": "a/b", "password": "pw"}).encode(), "name"),
        (b"[]", None),
    ]
    for raw, field in cases:
        reply = _call(admin, "POST", "/api/v1/users", "/api/v1/users", raw=raw)
        assert reply.status == 400, raw
        assert reply.json().get("field") == field, reply.json()
    assert _call(admin, "GET", "/api/v1/users/frank", "/api/v1/users/{name}").status == 404
    reply = _call(
        admin, "POST", "/api/v1/users", "/api/v1/users", {"name": "alice", "password": "x"}
    )
    assert reply.status == 409
    assert _call(admin, "GET", "/api/v1/users?limit=0", "/api/v1/users").json()["field"] == "limit"


def test_tokens_scopes_and_expiry(admin):
    assert _call(admin, "GET", "/api/v1/users", "/api/v1/users", token=None).status == 401
    assert (
        _call(
            admin, "GET", "/api/v1/users", "/api/v1/users", token="popbox_00000000_" + "x" * 43
        ).status
        == 401
    )
    assert (
        _call(admin, "GET", "/api/v1/users", "/api/v1/users", token=admin.expired_token).status
        == 401
    )
    assert _call(admin, "GET", "/api/v1/users", "/api/v1/users", token="read").status == 200
    reply = _call(
        admin,
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        {"name": "gina", "password": "pw"},
        token="read",
    )
    assert reply.status == 403
    assert _call(admin, "POST", "/api/v1/reload", "/api/v1/reload", token="read").status == 403
    assert _call(admin, "GET", "/api/v1/users/gina", "/api/v1/users/{name}").status == 404


def test_an_injected_message_is_retrieved_byte_exact_by_a_pop3_client(admin):
    raw = b"From: a@example.com\nSubject: injected\n\n.dot line\nbody \xe9\n"
    reply = _call(
        admin, "POST", "/api/v1/users/bob/messages", "/api/v1/users/{name}/messages", raw=raw
    )
    assert reply.status == 201
    listing = reply.json()
    expected = normalise(raw)
    assert listing["size"] == len(expected)
    client = _pop(admin, "bob", "bob-password")
    try:
        _, lines, _ = client.retr(1)
    finally:
        client.quit()
    assert b"\r\n".join(lines) + b"\r\n" == expected
    got = _call(
        admin,
        "GET",
        f"/api/v1/users/bob/messages/{listing['uid']}/raw",
        "/api/v1/users/{name}/messages/{uid}/raw",
    )
    assert got.body == expected
    assert got.headers["Content-Type"].startswith("message/rfc822")
    messages = _call(
        admin, "GET", "/api/v1/users/bob/messages", "/api/v1/users/{name}/messages"
    ).json()
    assert messages[0]["retrieved_at"] is not None  # RETR then QUIT stamped it
    detail = _call(
        admin,
        "GET",
        f"/api/v1/users/bob/messages/{listing['uid']}",
        "/api/v1/users/{name}/messages/{uid}",
    ).json()
    assert ["Subject", "injected"] in detail["headers"]
    assert detail["text"].startswith(".dot line")


def test_injection_follows_the_delivery_rules(admin):
    _call(
        admin,
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        {"name": "hank", "password": "pw", "quota": 50},
    )
    path, template = "/api/v1/users/hank/messages", "/api/v1/users/{name}/messages"
    assert _call(admin, "POST", path, template, raw=b"Subject: x\n\n" + b"y" * 100).status == 507
    assert (
        _call(admin, "POST", path, template, raw=b"Subject: x\n\nnul\x00here\n").json()["field"]
        == "body"
    )
    assert (
        _call(
            admin, "POST", "/api/v1/users/nobody/messages", template, raw=b"Subject: x\n\ny\n"
        ).status
        == 404
    )
    assert _call(admin, "GET", path, template).json() == []


def test_message_ids_are_uids_only(admin):
    template = "/api/v1/users/{name}/messages/{uid}"
    for uid in ("..%2F..%2Fetc%2Fpasswd", "0", "-1", "1.5", "%2e%2e", "%EF%BC%91"):
        reply = admin.call("GET", f"/api/v1/users/alice/messages/{uid}")
        assert reply.status in {400, 404}, uid
        assert b"root:" not in reply.body
        if reply.status == 400:
            check_documented("GET", template, reply)
            assert reply.json()["field"] == "uid"
    assert _call(admin, "GET", "/api/v1/users/alice/messages/999", template).status == 404
    first = _call(
        admin, "GET", "/api/v1/users/alice/messages", "/api/v1/users/{name}/messages"
    ).json()[0]
    assert (
        _call(admin, "DELETE", f"/api/v1/users/alice/messages/{first['uid']}", template).status
        == 204
    )
    assert (
        _call(admin, "DELETE", f"/api/v1/users/alice/messages/{first['uid']}", template).status
        == 404
    )


def _sessions_of(admin, user, count):
    deadline = time.monotonic() + HTTP_TIMEOUT
    while time.monotonic() < deadline:
        found = _call(admin, "GET", f"/api/v1/sessions?user={user}", "/api/v1/sessions").json()
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} sessions of {user} never listed: {found}")


def test_sessions_of_both_workers_are_listed_and_kicked(admin):
    _call(admin, "POST", "/api/v1/users", "/api/v1/users", {"name": "ivy", "password": "ivy pw"})
    clients = [_pop(admin, "ivy", "ivy pw") for _ in range(6)]
    try:
        found = _sessions_of(admin, "ivy", 6)
        assert {s["mechanism"] for s in found} == {"USER"}
        assert len({s["worker"] for s in found}) == 2, "the kernel spread six connections"
        one = found[0]
        reply = _call(admin, "DELETE", f"/api/v1/sessions/{one['id']}", "/api/v1/sessions/{id}")
        assert reply.json() == {"kicked": 1}
        closed = [c for c in clients if _is_closed(c)]
        assert len(closed) == 1
        reply = _call(
            admin, "DELETE", "/api/v1/users/ivy/sessions", "/api/v1/users/{name}/sessions"
        )
        assert reply.json() == {"kicked": 5}
        assert all(_is_closed(c, wait=HTTP_TIMEOUT) for c in clients if c not in closed)
        assert (
            _call(admin, "DELETE", f"/api/v1/sessions/{one['id']}", "/api/v1/sessions/{id}").status
            == 404
        )
    finally:
        for client in clients:
            client.close()


def _is_closed(client: poplib.POP3, wait: float = 2.0) -> bool:
    """A kicked session got one -ERR line and then the end of the connection."""
    readable, _, _ = select.select([client.sock], [], [], wait)
    if not readable:
        return False
    line = client.file.readline()
    assert line.startswith(b"-ERR session closed by an administrator"), line
    assert client.file.readline() == b""
    return True


def test_the_protocol_log_of_a_user_streams_live(admin):
    conn = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=HTTP_TIMEOUT)
    conn.request(
        "GET", "/api/v1/users/bob/protocol", headers={"Authorization": f"Bearer {admin.read_token}"}
    )
    answer = conn.getresponse()
    assert answer.status == 200
    assert answer.getheader("Content-Type") == "text/event-stream"
    assert answer.readline() == b": watching\n"
    lines: list[dict] = []

    def read() -> None:
        while raw := answer.readline():
            if raw.startswith(b"data: "):
                lines.append(json.loads(raw[6:]))
                if lines[-1]["line"].startswith("NOOP") or len(lines) > 20:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + HTTP_TIMEOUT
    while reader.is_alive() and time.monotonic() < deadline:
        client = _pop(admin, "bob", "bob-password")
        client.stat()
        client.noop()
        client.quit()
        reader.join(0.5)
    conn.close()
    texts = [(line["direction"], line["line"]) for line in lines]
    assert ("in", "NOOP") in texts
    assert not any("bob-password" in text for _, text in texts)  # never the login


def test_operations(admin):
    toml = _call(admin, "GET", "/api/v1/config", "/api/v1/config").json()["toml"]
    assert "[admin]" in toml
    assert "workers = 2" in toml
    settings = _call(
        admin, "GET", "/api/v1/connection-settings", "/api/v1/connection-settings"
    ).json()
    assert settings == {
        # Built from the listeners, whose ports here are ephemeral: nothing to tell anyone.
        "internal": [],
        "external": [
            {"host": "mail.example.com", "port": 995, "encryption": "SSL"},
            {"host": "mail.example.com", "port": 110, "encryption": ""},
        ],
    }
    check = _call(admin, "GET", "/api/v1/config/check", "/api/v1/config/check").json()
    assert check["valid"] is True
    assert check["error"] is None
    assert _call(admin, "POST", "/api/v1/reload", "/api/v1/reload").json() == {"reloaded": True}
    assert _call(admin, "GET", "/api/v1/health", "/api/v1/health").json() == {
        "ok": True,
        "text": "ok",
    }
    client = _pop(admin, "bob", "bob-password")
    try:
        stats = _call(admin, "GET", "/api/v1/stats", "/api/v1/stats").json()
    finally:
        client.quit()
    assert stats["connections_open"] >= 1
    assert stats["logins"] >= 1


def test_every_change_leaves_an_audit_line(admin):
    _call(admin, "POST", "/api/v1/users", "/api/v1/users", {"name": "judy", "password": "pw"})
    deadline = time.monotonic() + HTTP_TIMEOUT
    while "user=judy" not in admin.process.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(
        x for x in admin.process.stderr().splitlines() if "admin_change" in x and "user=judy" in x
    )
    assert "action=user.add" in line
    assert "who=token:" in line
    assert "peer=127.0.0.1" in line
    assert "pw" not in line.split("admin_change", 1)[1].replace("peer", "")
