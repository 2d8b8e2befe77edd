"""Two popbox nodes on one PostgreSQL database: RETR after another node's DELE is -ERR.

C0004: a session downloading its maildrop on node B has the next small bodies read
ahead (one statement for many RETRs).  A session on node A deletes one of them and
QUITs; once A has its +OK, B's RETR of that message must get -ERR, never the copy B
read before.  The nodes are two ``popbox serve`` processes sharing nothing but the
database, each with two workers.
"""

from __future__ import annotations

import poplib

import pytest

from ops_helpers import TIMEOUT, start_node
from pg_helpers import ThrowawayDatabase, shared_server_dsn
from popbox_servers import USERS

MESSAGES = [b"Subject: %d\r\n\r\nmessage %d\r\n" % (n, n) for n in range(1, 9)]


@pytest.fixture
def nodes(tmp_path, tls_files):
    database = ThrowawayDatabase(shared_server_dsn())
    sections = {
        "storage": {"backend": "postgresql", "dsn": database.dsn},
        "server": {"workers": 2},
    }
    pop3 = {"login_type": "plaintext_login"}
    started = []
    try:
        for name in ("a", "b"):
            started.append(
                start_node(
                    tmp_path / name,
                    tls_files,
                    sections=sections,
                    pop3=pop3,
                    messages={"alice": MESSAGES} if not started else None,
                    provisioned=bool(started),
                )
            )
        yield started
    finally:
        for node in started:
            node.process.close()
        database.drop()


def login(port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    client.user("alice")
    client.pass_(USERS["alice"])
    return client


def body(client: poplib.POP3, msg: int) -> bytes:
    _, lines, _ = client.retr(msg)
    return b"\r\n".join(lines) + b"\r\n"


def test_retr_after_another_nodes_dele_and_quit_is_err_c0004(nodes) -> None:
    """2.1.3 / C0004: RETR of a message removed behind the session's back gets -ERR."""
    node_a, node_b = nodes
    reader = login(node_b.port())
    try:
        assert reader.stat()[0] == len(MESSAGES)
        assert body(reader, 1) == MESSAGES[0]  # messages 2.. are read ahead with it
        deleter = login(node_a.port())
        deleter.dele(3)
        deleter.dele(6)
        assert deleter.quit().startswith(b"+OK")
        assert body(reader, 2) == MESSAGES[1]
        for gone in (3, 6):
            with pytest.raises(poplib.error_proto) as refused:
                reader.retr(gone)
            assert refused.value.args[0].startswith(b"-ERR")
        assert [body(reader, n) for n in (4, 5, 7, 8)] == [MESSAGES[n - 1] for n in (4, 5, 7, 8)]
    finally:
        reader.quit()
    again = login(node_b.port())
    try:
        assert again.stat()[0] == len(MESSAGES) - 2
    finally:
        again.quit()
