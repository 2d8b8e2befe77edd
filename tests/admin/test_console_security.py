"""The web console's defences, over HTTP against the admin application in this process.

CSRF, session fixation, cookie flags and expiry (on a ManualClock), the brute-force
guard on console logins, XSS in a message's subject, text and HTML parts, message ids
that try to leave the mailbox, and the Content-Security-Policy of every page.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer

from popbox.admin.app import CSP, AdminServer
from popbox.admin.console.pages_users import HTML_PART_CSP
from popbox.admin.console.sessions import COOKIE
from popbox.admin.node import LocalNode
from popbox.clock import ManualClock
from popbox.config import from_mapping
from popbox.node import app as node_app
from popbox.observability.log import make_logger
from popbox.store.memory import MemoryStore
from popbox_servers import provision_store

ROOT_PASSWORD = "root console pw"
XSS_SUBJECT = "<script>alert('subject')</script>"
XSS_TEXT = "<img src=x onerror=alert('text')>"
XSS_HTML = "<p>hello</p><script>alert('html')</script><img src=x onerror=alert(2)>"
XSS_MESSAGE = (
    f"From: a@example.com\r\nSubject: {XSS_SUBJECT}\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    f"--b\r\nContent-Type: text/plain\r\n\r\n{XSS_TEXT}\r\n"
    f"--b\r\nContent-Type: text/html\r\n\r\n{XSS_HTML}\r\n--b--\r\n"
).encode()
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    client: TestClient
    clock: ManualClock
    store: MemoryStore
    log: io.StringIO
    issued: str | None = None  # the session cookie the latest login set

    def set_cookie(self, value: str) -> None:
        """The browser's session cookie is ``value`` from now on (and nothing else)."""
        jar = self.client.session.cookie_jar
        jar.clear()
        jar.update_cookies({COOKIE: value}, self.client.make_url("/"))

    async def login(self, name: str = "root", password: str = ROOT_PASSWORD) -> str:
        """Log in; the CSRF token of the new login."""
        reply = await self.client.post(
            "/console/login", data={"name": name, "password": password}, allow_redirects=False
        )
        assert reply.status == 303, await reply.text()
        self.issued = reply.cookies[COOKIE].value
        return await self.csrf()

    async def csrf(self) -> str:
        reply = await self.client.get("/console/users")
        assert reply.status == 200
        match = _CSRF.search(await reply.text())
        assert match is not None
        return match[1]

    def cookie(self) -> str | None:
        found = [c.value for c in self.client.session.cookie_jar if c.key == COOKIE and c.value]
        return found[0] if found else None


async def _console(tmp_path, admin: dict | None = None) -> Console:
    clock = ManualClock()
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "pop3": {"listen": [], "tls_listen": [], "auth_failure_delay": 0.0},
            "lmtp": {"listen": []},
            "auth": {"ip_lockout_failures": 0, "user_lockout_failures": 3, "admins": ["boss"]},
            "admin": {
                "listen": ["127.0.0.1:0"],
                "users": ["root"],
                "session_idle": 600,
                "session_lifetime": 3600,
                **(admin or {}),
            },
        }
    )
    store = MemoryStore()
    await provision_store(
        store,
        {"root": ROOT_PASSWORD, "boss": "boss pw", "alice": "alice pw"},
        {"alice": [b"Subject: plain\r\n\r\nhello\r\n", XSS_MESSAGE]},
    )
    log = io.StringIO()
    context = await node_app.build_context(
        config, store=store, clock=clock, log=make_logger(stream=log)
    )
    server = AdminServer(
        node=LocalNode(context, None),
        store=context.store,
        log=context.log,
        clock=clock,
        passwords=context.passwords,
        guard=context.guard,
        tls=None,
    )
    # Cookies for 127.0.0.1: aiohttp's jar keeps cookies of IP hosts only when unsafe.
    client = TestClient(TestServer(server.app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return Console(client, clock, store, log)


@pytest.fixture
async def console(tmp_path):
    found = await _console(tmp_path)
    yield found
    await found.client.close()


async def test_pages_need_a_login_and_the_login_page_needs_none(console):
    reply = await console.client.get("/console/users", allow_redirects=False)
    assert reply.status == 303
    assert reply.headers["Location"] == "/console/login"
    assert (await console.client.get("/console/login")).status == 200


async def test_a_wrong_password_an_unknown_name_and_a_non_admin_are_refused_alike(console):
    for name, password in (("root", "wrong"), ("nobody", "x"), ("alice", "alice pw")):
        reply = await console.client.post(
            "/console/login", data={"name": name, "password": password}, allow_redirects=False
        )
        assert reply.status == 401, name
        assert "wrong name or password" in await reply.text()
        assert console.cookie() is None


async def test_auth_admins_may_log_in_too(console):
    await console.login("boss", "boss pw")
    assert (await console.client.get("/console")).status == 200


async def test_the_brute_force_guard_locks_out_console_logins(console):
    for _ in range(3):  # user_lockout_failures = 3
        reply = await console.client.post(
            "/console/login", data={"name": "root", "password": "guess"}, allow_redirects=False
        )
        assert reply.status == 401
    reply = await console.client.post(
        "/console/login", data={"name": "root", "password": ROOT_PASSWORD}
    )
    assert reply.status == 401  # even the right password, during the lockout
    assert "too many failed logins" in await reply.text()
    console.clock.advance(301.0)  # auth.lockout_duration
    await console.login()


async def test_state_changes_without_or_with_a_wrong_csrf_token_are_refused(console):
    token = await console.login()
    form = {"name": "mallory", "password": "pw"}
    for sent in ({}, {"csrf": "wrong"}, {"csrf": token[:-1]}):
        reply = await console.client.post("/console/users", data={**form, **sent})
        assert reply.status == 403, sent
        assert "CSRF" in await reply.text()
    # The right token from another site's page (its Origin) is refused as well.
    reply = await console.client.post(
        "/console/users",
        data={**form, "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert reply.status == 403
    assert await console.store.get_user("mallory") is None
    reply = await console.client.post(
        "/console/users", data={**form, "csrf": token}, allow_redirects=False
    )
    assert reply.status == 303
    assert await console.store.get_user("mallory") is not None


async def test_every_form_on_every_page_carries_the_csrf_token(console):
    token = await console.login()
    for path in ("/console", "/console/users", "/console/users/alice", "/console/sessions"):
        text = await (await console.client.get(path)).text()
        forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", text, re.DOTALL)
        assert forms, path
        for form in forms:
            assert f'name="csrf" value="{token}"' in form, (path, form)


async def test_a_cookie_set_before_the_login_is_not_adopted(console):
    """Session fixation: neither a planted value nor an earlier real id survives a login."""
    planted = "attacker-chosen-id.0123456789abcdef"
    console.set_cookie(planted)
    await console.login()
    first = console.issued
    assert first is not None
    assert first != planted
    assert planted.split(".", maxsplit=1)[0] not in first
    await console.login()  # a second login from the same browser: a new id again
    second = console.issued
    assert second != first
    console.set_cookie(first)
    reply = await console.client.get("/console", allow_redirects=False)
    assert reply.status == 303  # the id from before the login is dead


async def test_the_cookie_is_httponly_samestrict_and_not_readable_by_scripts(console):
    reply = await console.client.post(
        "/console/login", data={"name": "root", "password": ROOT_PASSWORD}, allow_redirects=False
    )
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would not return


async def test_the_cookie_is_secure_when_the_console_is_served_over_tls(tmp_path):
    console = await _console(tmp_path, {"tls": True, "listen": ["0.0.0.0:0"]})
    try:
        reply = await console.client.post(
            "/console/login",
            data={"name": "root", "password": ROOT_PASSWORD},
            allow_redirects=False,
        )
        assert "Secure" in reply.headers["Set-Cookie"]
    finally:
        await console.client.close()


async def test_a_forged_cookie_is_refused(console):
    await console.login()
    session_id, _, signature = console.issued.partition(".")
    for forged in (f"{session_id}.{'0' * len(signature)}", session_id, f"{session_id}.%C3"):
        console.set_cookie(forged)
        reply = await console.client.get("/console", allow_redirects=False)
        assert reply.status == 303, forged


async def test_a_login_ends_after_idling_and_after_its_lifetime(console):
    await console.login()
    console.clock.advance(599.0)
    assert (await console.client.get("/console", allow_redirects=False)).status == 200
    console.clock.advance(599.0)  # each request restarts the idle time
    assert (await console.client.get("/console", allow_redirects=False)).status == 200
    console.clock.advance(601.0)
    assert (await console.client.get("/console", allow_redirects=False)).status == 303
    await console.login()
    for _ in range(7):  # busy, never idle, but the absolute lifetime (3600 s) ends it
        console.clock.advance(500.0)
        assert (await console.client.get("/console", allow_redirects=False)).status == 200
    console.clock.advance(500.0)
    assert (await console.client.get("/console", allow_redirects=False)).status == 303


async def test_logout_ends_the_login(console):
    token = await console.login()
    old = console.issued
    reply = await console.client.post(
        "/console/logout", data={"csrf": token}, allow_redirects=False
    )
    assert reply.status == 303
    console.set_cookie(old)
    assert (await console.client.get("/console", allow_redirects=False)).status == 303


async def _xss_uid(console) -> int:
    infos = await console.store.snapshot("alice")
    return infos[-1].uid


async def test_xss_in_subject_text_and_html_parts_is_rendered_inertly(console):
    await console.login()
    uid = await _xss_uid(console)
    base = f"/console/users/alice/messages/{uid}"
    page = await (await console.client.get(base)).text()
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(&#39;text&#39;)&gt;" in page
    assert "alert('html')" not in page  # the HTML part is never in the page itself
    iframe = re.search(r"<iframe[^>]*>", page)[0]
    assert f'src="{base}/html"' in iframe
    assert re.search(r"\bsandbox\b(?!-)", iframe)
    assert "allow-scripts" not in iframe
    assert "allow-same-origin" not in iframe
    listing = await (await console.client.get("/console/users/alice")).text()
    assert "<script>alert" not in listing
    part = await console.client.get(f"{base}/html")
    assert part.status == 200
    assert part.headers["Content-Security-Policy"] == HTML_PART_CSP
    policy = part.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;")
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # so default-src 'none' forbids every script
    assert XSS_HTML in await part.text()
    raw = await console.client.get(f"{base}/raw")
    assert raw.headers["Content-Type"].startswith("text/plain")
    assert raw.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "uid",
    ["..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e", "0", "-1", "1.5", "1e3", "%EF%BC%91", "9" * 30],
)
async def test_message_ids_that_are_not_uids_are_refused(console, uid):
    await console.login()
    for suffix in ("", "/html", "/raw"):
        reply = await console.client.get(f"/console/users/alice/messages/{uid}{suffix}")
        assert reply.status in {400, 404}, (uid, suffix)
        text = await reply.text()
        assert "root:" not in text
        assert reply.headers["Content-Type"].startswith("text/html")  # a page, not a file


async def test_a_uid_not_in_the_mailbox_is_404(console):
    await console.login()
    reply = await console.client.get("/console/users/alice/messages/999")
    assert reply.status == 404
    assert "no such message" in await reply.text()


async def test_every_page_carries_the_strict_csp(console):
    await console.login()
    uid = await _xss_uid(console)
    paths = [
        "/console",
        "/console/login",
        "/console/users",
        "/console/users?q=%3Cscript%3E",
        "/console/users/alice",
        f"/console/users/alice/messages/{uid}",
        "/console/users/alice/log",
        "/console/sessions",
        "/console/static/console.css",
        "/console/static/log.js",
        "/console/users/nobody",
        "/console/no-such-page",
    ]
    for path in paths:
        reply = await console.client.get(path, allow_redirects=False)
        assert reply.headers["Content-Security-Policy"] == CSP, path
        assert reply.headers["X-Frame-Options"] == "DENY", path
    assert "script-src 'self';" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert "http" not in CSP  # no other origin


async def test_pages_have_no_inline_script_and_only_own_assets(console):
    await console.login()
    uid = await _xss_uid(console)
    for path in ("/console", "/console/users", f"/console/users/alice/messages/{uid}"):
        text = await (await console.client.get(path)).text()
        for tag in re.findall(r"<script[^>]*>", text):
            assert 'src="/console/static/' in tag, tag
        assert not re.search(r"<[^>]+\son[a-z]+=", text), path  # no event-handler attributes
        assert not re.search(r"<[^>]+\sstyle=", text), path  # no inline styles
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path


async def test_the_console_can_be_turned_off(tmp_path):
    console = await _console(tmp_path, {"console": False})
    try:
        assert (await console.client.get("/console/login")).status == 404
        reply = await console.client.post(
            "/console/login", data={"name": "root", "password": ROOT_PASSWORD}
        )
        assert reply.status in {404, 405}
    finally:
        await console.client.close()


async def test_disable_and_enable_from_the_console_leave_audit_lines(console):
    token = await console.login()
    reply = await console.client.post(
        "/console/users/alice/disable", data={"csrf": token, "reason": "on leave"}
    )
    assert reply.status == 200
    assert "user alice disabled" in await reply.text()
    assert (await console.store.get_user("alice")).disabled_reason == "on leave"
    await console.client.post("/console/users/alice/enable", data={"csrf": token})
    assert (await console.store.get_user("alice")).disabled_reason is None
    lines = [x for x in console.log.getvalue().splitlines() if "admin_change" in x]
    assert any("action=user.disable" in x and "who=console:root" in x for x in lines)
    assert any("action=user.enable" in x for x in lines)
    assert any("action=console.login" in x for x in lines)


async def test_a_failed_login_is_audited_without_the_controls_of_the_name(console):
    reply = await console.client.post(
        "/console/login", data={"name": "eve\nforged=line", "password": "guess"}
    )
    assert reply.status == 401
    lines = [x for x in console.log.getvalue().splitlines() if "console.login_failed" in x]
    assert len(lines) == 1
    assert "who=console:eve?forged=line" in lines[0]
    assert "guess" not in console.log.getvalue()
