"""Signals on a single-process server: SIGTERM drains, SIGHUP reloads.

DESIGN.md section 4: "SIGTERM drains (finishes sessions up to a deadline), SIGHUP reloads".
RFC 1939 section 6: a session that does not end with QUIT from TRANSACTION never enters
UPDATE, so a session cut off by the shutdown deletes nothing.
"""

from __future__ import annotations

import asyncio
import poplib
import shutil
import signal
import socket
import ssl
import time

import pytest
import trustme

from ops_helpers import TIMEOUT, login, read_line, start_node
from popbox.store import open_store
from popbox_servers import USERS, TlsFiles

SINGLE = {"workers": 1}
MESSAGES = [b"Subject: one\r\n\r\nbody 1\r\n", b"Subject: two\r\n\r\nbody 2\r\n"]


@pytest.fixture
def node(tmp_path, tls_files):
    started = start_node(
        tmp_path / "node",
        tls_files,
        sections={"server": SINGLE},
        pop3={"login_type": "plaintext_login", "shutdown_grace": 2.0},
        messages={"alice": MESSAGES, "bob": MESSAGES},
    )
    yield started
    started.process.close()


def count(node, user: str) -> int:
    async def run() -> int:
        store = open_store("sqlite", data_dir=node.data_dir, dsn="")
        await store.open()
        try:
            return len(await store.snapshot(user))
        finally:
            await store.close()

    return asyncio.run(run())


def test_sigterm_lets_sessions_finish_then_cuts_the_rest_without_update_rfc1939_s6(node):
    """RFC 1939 s6: only QUIT enters UPDATE; the cut-off session's DELE is not applied."""
    finishing = login(node.port(), "bob")
    lingering = login(node.port(), "alice")
    finishing.dele(1)
    lingering.dele(1)
    node.signal(signal.SIGTERM)
    node.wait_for(lambda e: e.get("event") == "stopping")
    # New connections are no longer accepted while the old ones drain.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", node.port()), TIMEOUT).close()
    assert finishing.quit().startswith(b"+OK signing off, 1 message deleted")
    started = time.monotonic()
    assert lingering.file.readline() == (
        b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"
    )
    assert time.monotonic() - started < 4
    assert lingering.file.readline() == b""  # closed
    lingering.close()
    assert node.process.process.wait(TIMEOUT) == 0
    assert count(node, "bob") == 1
    assert count(node, "alice") == 2


def test_sigterm_with_no_sessions_exits_at_once(node):
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.process.process.wait(TIMEOUT) == 0
    assert time.monotonic() - started < 2


def test_sighup_applies_banner_login_type_and_limits_to_new_connections(node):
    session = login(node.port())
    node.rewrite_config(
        pop3={"banner": "after reload", "login_type": "secure_login"},
        server={"max_sessions_per_user": 2},
    )
    node.signal(signal.SIGHUP)
    [reloaded] = node.wait_for(lambda e: e.get("event") == "config_reloaded")
    assert reloaded.get("needs_restart") is None
    with socket.create_connection(("127.0.0.1", node.port()), TIMEOUT) as sock:
        assert read_line(sock) == b"+OK after reload\r\n"
        sock.sendall(b"USER alice\r\n")
        assert read_line(sock).startswith(b"-ERR USER/PASS is only allowed over TLS")
    context = node_tls(node)
    second = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), timeout=TIMEOUT, context=context)
    second.user("alice")
    second.pass_(USERS["alice"])  # the second session of alice
    third = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), timeout=TIMEOUT, context=context)
    third.user("alice")
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP\] too many sessions"):
        third.pass_(USERS["alice"])
    assert session.stat()[0] == 2  # the session from before the reload goes on
    for client in (session, second, third):
        client.quit()


def test_sighup_with_a_broken_file_keeps_the_running_configuration(node):
    node.config_path.write_text("[pop3]\nmax_command_size = 5\n", encoding="utf-8")
    node.signal(signal.SIGHUP)
    [failed] = node.wait_for(lambda e: e.get("event") == "config_reload_failed")
    assert "pop3.max_command_size" in failed["error"]
    client = login(node.port())  # still serving, old settings
    assert client.stat()[0] == 2
    client.quit()


def test_sighup_reports_settings_that_need_a_restart(node):
    node.rewrite_config(pop3={"listen": ["127.0.0.1:1"], "banner": "new"})
    node.signal(signal.SIGHUP)
    [reloaded] = node.wait_for(lambda e: e.get("event") == "config_reloaded")
    assert reloaded["needs_restart"] == ["pop3.listen"]
    with socket.create_connection(("127.0.0.1", node.port()), TIMEOUT) as sock:
        assert read_line(sock) == b"+OK new\r\n"  # the rest applied; the old port serves


def test_sighup_reloads_the_certificate_without_dropping_tls_sessions(tmp_path, tls_files):
    sources = (tls_files.ca_file, tls_files.cert_file, tls_files.key_file)
    own = TlsFiles(*(tmp_path / source.name for source in sources))
    for source in sources:
        shutil.copy(source, tmp_path / source.name)  # this test rewrites the certificate
    node = start_node(
        tmp_path / "node", own, sections={"server": SINGLE}, messages={"alice": MESSAGES}
    )
    try:
        reload_certificate(node, tmp_path)
    finally:
        node.process.close()


def reload_certificate(node, tmp_path) -> None:
    old_context = node_tls(node)
    before = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), timeout=TIMEOUT, context=old_context)
    before.user("alice")
    before.pass_(USERS["alice"])
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = node.mapping["tls"]["cert_file"], node.mapping["tls"]["key_file"]
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    node.signal(signal.SIGHUP)
    node.wait_for(lambda e: e.get("event") == "tls_reloaded")
    new_context = ssl.create_default_context()
    ca.configure_trust(new_context)
    after = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), timeout=TIMEOUT, context=new_context)
    assert after.getwelcome().startswith(b"+OK")
    after.quit()
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), timeout=TIMEOUT, context=old_context)
    assert before.stat()[0] == 2  # the session that began with the old certificate goes on
    before.quit()


def node_tls(node) -> ssl.SSLContext:
    ca_file = node.mapping["tls"]["cert_file"].rsplit("/", 1)[0] + "/ca.pem"
    return ssl.create_default_context(cafile=ca_file)
