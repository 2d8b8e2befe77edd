"""Two popbox nodes on one PostgreSQL database behind HAProxy with PROXY protocol v2.

The scale-out set-up of DESIGN.md section 1: HAProxy (Debian's ``haproxy``, in the
foreground) balances POP3, POP3S and LMTP round-robin over two ``popbox serve`` nodes
and sends each a PROXY v2 header (``send-proxy-v2``); the POP3S frontend passes TLS
through, so the header comes before the TLS handshake.  Clients connect from 127.0.0.2;
HAProxy connects to the nodes from 127.0.0.1, the only trusted proxy.  LMTP deliveries
run concurrently with the POP3 sessions.

With ``lock_mailbox`` on both nodes (RFC 1939 s8 exclusive access), a message is never
retrieved by two sessions that both delete it, whichever nodes they ran on.
"""

from __future__ import annotations

import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ops_helpers import TIMEOUT, start_node
from pg_helpers import ThrowawayDatabase, shared_server_dsn
from popbox_servers import USERS

CLIENT = "127.0.0.2"  # where clients connect from; HAProxy itself uses 127.0.0.1
KINDS = frozenset({"pop3", "pop3s", "lmtp"})


class _FromClientAddress:
    """poplib connecting from ``CLIENT``, so the PROXY header has a distinct address."""

    host: str
    port: int

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(CLIENT, 0))
        if isinstance(self, poplib.POP3_SSL):  # what POP3_SSL._create_socket adds
            return self.context.wrap_socket(sock, server_hostname=self.host)
        return sock


class Pop3(_FromClientAddress, poplib.POP3):
    pass


class Pop3Ssl(_FromClientAddress, poplib.POP3_SSL):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Haproxy:
    process: subprocess.Popen[bytes]
    pop3: int
    pop3s: int
    lmtp: int


def start_haproxy(directory, nodes) -> Haproxy:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed: run scripts/setup (CI installs it)")
    ports = {"pop3": free_port(), "pop3s": free_port(), "lmtp": free_port()}
    lines = [
        "global",
        "    maxconn 500",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
    ]
    for kind, port in ports.items():
        lines += [
            f"frontend {kind}",
            f"    bind 127.0.0.1:{port}",
            f"    default_backend {kind}_nodes",
        ]
        lines += [f"backend {kind}_nodes", "    balance roundrobin"]
        lines += [
            f"    server {name} 127.0.0.1:{node.port(kind)} send-proxy-v2"
            for name, node in zip("ab", nodes, strict=True)
        ]
    config = directory / "haproxy.cfg"
    config.write_text("\n".join(lines) + "\n", encoding="ascii")
    log = (directory / "haproxy.log").open("wb")
    process = subprocess.Popen(
        [binary, "-db", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
    )
    log.close()
    deadline = time.monotonic() + TIMEOUT
    for port in ports.values():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1, source_address=(CLIENT, 0)).close()
                break
            except OSError:
                assert process.poll() is None, (directory / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "haproxy did not start listening"
                time.sleep(0.05)
    return Haproxy(process, ports["pop3"], ports["pop3s"], ports["lmtp"])


@pytest.fixture
def cluster(tmp_path, tls_files):
    database = ThrowawayDatabase(shared_server_dsn())
    common = {
        "storage": {"backend": "postgresql", "dsn": database.dsn},
        "lmtp": {"listen": ["127.0.0.1:0"]},
    }
    server = {"trusted_proxies": ["127.0.0.1/32"], "protocol_log_users": ["alice"]}
    pop3 = {"login_type": "plaintext_login", "lock_mailbox": True}
    nodes = []
    haproxy = None
    try:
        nodes.append(
            start_node(
                tmp_path / "a",
                tls_files,
                sections={**common, "server": {**server, "workers": 1}},
                pop3=pop3,
                kinds=KINDS,
            )
        )
        nodes.append(
            start_node(
                tmp_path / "b",
                tls_files,
                sections={**common, "server": {**server, "workers": 2}},
                pop3=pop3,
                kinds=KINDS,
                provisioned=True,
            )
        )
        haproxy = start_haproxy(tmp_path, nodes)
        yield nodes, haproxy, database
    finally:
        if haproxy is not None:
            haproxy.process.terminate()
            haproxy.process.wait(TIMEOUT)
        for node in nodes:
            node.process.close()
        database.drop()


def events(nodes, name: str) -> list[tuple[int, dict]]:
    return [(i, e) for i, node in enumerate(nodes) for e in node.events() if e.get("event") == name]


def login(port: int, user: str, *, tls_files=None) -> poplib.POP3:
    if tls_files is None:
        client = Pop3("127.0.0.1", port, timeout=TIMEOUT)
    else:
        client = Pop3Ssl("127.0.0.1", port, timeout=TIMEOUT, context=tls_files.client_context())
    try:
        client.user(user)
        client.pass_(USERS[user])
    except poplib.error_proto:
        client.close()
        raise
    return client


def test_sessions_are_balanced_and_logged_with_the_client_address(cluster, tls_files):
    nodes, haproxy, _ = cluster
    for _ in range(4):
        login(haproxy.pop3, "bob").quit()
    tls = login(haproxy.pop3s, "bob", tls_files=tls_files)  # PROXY header, then TLS
    assert tls.stat()[0] == 0
    tls.quit()
    logins = events(nodes, "login")
    assert len(logins) == 5
    assert {i for i, _ in logins} == {0, 1}  # both nodes served
    mine = {(i, e["session"]) for i, e in logins}
    connects = [(i, e) for i, e in events(nodes, "connect") if (i, e["session"]) in mine]
    assert len(connects) == 5
    assert sum(e["tls"] for _, e in connects) == 1
    # Every session, HAProxy's start-up probe included, has the client's address: never
    # HAProxy's own (127.0.0.1), although that is the address the nodes' sockets see.
    for event in ("connect", "login", "disconnect"):
        assert all(e["peer"].startswith(f"{CLIENT}:") for _, e in events(nodes, event))


def test_lock_mailbox_holds_across_nodes_rfc1939_s8(cluster):
    """RFC 1939 s8: the server may lock the maildrop; a second session gets [IN-USE]."""
    nodes, haproxy, _ = cluster
    holder = login(haproxy.pop3, "alice")
    [(held_on, _)] = events(nodes, "login")
    # Round-robin usually sends the next session to the other node, but health checks and
    # earlier connections can shift the turn: try a few sessions until one lands there.
    for _attempt in range(4):
        second = Pop3("127.0.0.1", haproxy.pop3, timeout=TIMEOUT)
        second.user("alice")
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[IN-USE\] "):
            second.pass_(USERS["alice"])
        second.quit()
        refused_on = {node for node, _ in events(nodes, "login_refused_locked")}
        if refused_on - {held_on}:
            break
    assert refused_on - {held_on}, "no session reached the other node"  # the lock is in the DB
    holder.quit()
    login(haproxy.pop3, "alice").quit()  # released at QUIT, on any node


def test_protocol_log_shows_the_real_client_ip(cluster):
    nodes, haproxy, _ = cluster
    client = login(haproxy.pop3, "alice")
    client.stat()
    client.quit()
    lines = [e for _, e in events(nodes, "protocol")]
    assert [e["line"] for e in lines if e["direction"] == "in"] == ["STAT", "QUIT"]
    assert {e["peer"].split(":")[0] for e in lines} == {CLIENT}


@dataclass
class Load:
    acked: dict[str, int] = field(default_factory=dict)  # subject -> uid the node gave it
    retrieved: list[str] = field(default_factory=list)  # by sessions whose QUIT succeeded
    in_use: int = 0
    surprises: list[str] = field(default_factory=list)


def deliver(port: int, name: str, count: int, load: Load) -> None:
    for number in range(count):
        subject = f"{name}-{number}"
        try:
            with smtplib.LMTP(
                "127.0.0.1", port, timeout=TIMEOUT, source_address=(CLIENT, 0)
            ) as lmtp:
                lmtp.ehlo_or_helo_if_needed()  # LHLO (RFC 2033 s4.1)
                lmtp.mail("load@example.org")
                lmtp.rcpt("bob")
                code, reply = lmtp.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        except (OSError, smtplib.SMTPException) as exc:
            load.surprises.append(f"lmtp {subject}: {exc}")
            continue
        match = re.search(rb"delivered as message (\d+)", reply)
        if code != 250 or match is None:
            load.surprises.append(f"lmtp {subject}: {code} {reply!r}")
        else:
            load.acked[subject] = int(match[1])


def collect(port: int, stop: threading.Event, load: Load) -> None:
    while not stop.is_set():
        try:
            client = login(port, "bob")
        except poplib.error_proto as exc:
            if b"[IN-USE]" in exc.args[0]:
                load.in_use += 1
                time.sleep(0.01)
            else:
                load.surprises.append(f"login: {exc}")
            continue
        subjects = []
        count, _ = client.stat()
        for number in range(1, count + 1):
            _, lines, _ = client.retr(number)
            subjects.append(next(line for line in lines if line.startswith(b"Subject: "))[9:])
            client.dele(number)
        if client.quit().startswith(b"+OK signing off"):
            load.retrieved.extend(s.decode() for s in subjects)


def test_concurrent_sessions_and_deliveries_through_two_nodes(cluster):
    nodes, haproxy, _ = cluster
    load = Load()
    stop = threading.Event()
    deliverers = [
        threading.Thread(target=deliver, args=(haproxy.lmtp, f"m{i}", 15, load)) for i in range(4)
    ]
    collectors = [
        threading.Thread(target=collect, args=(haproxy.pop3, stop, load)) for _ in range(4)
    ]
    for thread in deliverers + collectors:
        thread.start()
    for thread in deliverers:
        thread.join(60)
    deadline = time.monotonic() + 60
    while len(load.retrieved) < len(load.acked) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in collectors:
        thread.join(60)
    assert not load.surprises, load.surprises[:5]
    assert len(load.acked) == 60
    uids = sorted(load.acked.values())
    assert len(set(uids)) == 60  # one counter per mailbox, shared by both nodes (C0007)
    assert sorted(load.retrieved) == sorted(load.acked)  # each message exactly once
    assert {i for i, _ in events(nodes, "login")} == {0, 1}
    assert {i for i, _ in events(nodes, "lmtp_delivered")} == {0, 1}
    final = login(haproxy.pop3, "bob")
    assert final.stat() == (0, 0)
    final.quit()
