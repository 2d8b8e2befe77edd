"""``popbox demo`` turns the console on and prints its URL and a one-time admin login."""

from __future__ import annotations

import http.client
import re
import urllib.parse

from popbox_servers import ServeProcess

HTTP_TIMEOUT = 15.0
_LOGIN = re.compile(r'log in as "admin" with password "([^"]+)"')


def _start_demo(tmp_path, demo_dir) -> tuple[ServeProcess, str, str]:
    """A demo on ephemeral ports; its process, console URL and printed admin password."""
    process = ServeProcess(
        ["demo", "--dir", str(demo_dir)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    for _ in range(60):
        line = process.next_line()
        if line is None or _LOGIN.search(line):
            break
    text = "\n".join(process.output)
    url = re.search(r"Web console: (http://127\.0\.0\.1:\d+/console)", text)
    password = _LOGIN.search(text)
    assert url is not None, (text, process.stderr())
    assert password is not None, text
    return process, url[1], password[1]


def _login(url: str, password: str) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HTTP_TIMEOUT)
    body = urllib.parse.urlencode({"name": "admin", "password": password})
    conn.request(
        "POST",
        "/console/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer


def test_demo_prints_a_console_login_that_works_once_per_start(tmp_path):
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "popbox.toml").write_text(
        'data_dir = "."\n[pop3]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n'
        '[lmtp]\nlisten = ["127.0.0.1:0"]\n[admin]\nlisten = ["127.0.0.1:0"]\n',
        encoding="utf-8",
    )
    process, url, first = _start_demo(tmp_path, demo_dir)
    try:
        assert len(first) >= 16
        assert _login(url, "demo").status == 401
        answer = _login(url, first)
        assert answer.status == 303
        assert "popbox_console=" in answer.getheader("Set-Cookie")
        assert process.terminate() == 0
    finally:
        process.close()
    assert first not in (demo_dir / "popbox.toml").read_text(encoding="utf-8")
    process, url, second = _start_demo(tmp_path, demo_dir)
    try:
        assert second != first
        assert _login(url, first).status == 401  # the password shown before is dead
        assert _login(url, second).status == 303
    finally:
        process.terminate()
        process.close()
