"""Python's poplib against a real server: every download compared byte for byte.

Each test delivers through ``popbox.store.message.prepare`` + ``store.deliver`` (as ``popbox
deliver`` does) and reads back over real sockets: the plain port upgraded with STLS
(RFC 2595) or the implicit-TLS port.
"""

from __future__ import annotations

import poplib
import time

import pytest

from pop3_clients import (
    MESSAGES,
    RawClient,
    assert_mailbox,
    big_message,
    login,
    message_text,
    pop3_stls,
    wait_until,
)
from popbox.store.message import stuff, top_lines
from popbox_servers import USERS


def test_stls_login_then_stat_list_uidl_retr_match_the_delivery_rfc1939_rfc2595(pop3_server):
    """RFC 2595 s4: after STLS the client logs in over TLS; RETR gives the message as stored."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    client = pop3_stls(pop3_server)
    try:
        assert client.user("alice").startswith(b"+OK")
        assert client.pass_(USERS["alice"]).startswith(b"+OK")
        assert client.stat() == (len(MESSAGES), sum(d.info.size for d in delivered))
        _, listing, _ = client.list()
        assert listing == [f"{n} {d.info.size}".encode() for n, d in enumerate(delivered, 1)]
        _, uidls, _ = client.uidl()
        assert uidls == [f"{n} {d.info.uid}".encode() for n, d in enumerate(delivered, 1)]
        for n, d in enumerate(delivered, 1):
            assert client.list(n) == f"+OK {n} {d.info.size}".encode()  # V0004: size, then nothing
            _, lines, _ = client.retr(n)
            assert message_text(lines) == d.text
    finally:
        client.quit()


def test_pop3_ssl_session_sees_every_message_and_changes_nothing(pop3_server):
    """Implicit TLS (E0001): the same maildrop, and a session without DELE removes nothing."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    assert_mailbox(pop3_server, "alice", delivered)
    assert_mailbox(pop3_server, "alice", delivered)


def test_retr_wire_bytes_are_stuffed_and_terminated_rfc1939_s3(pop3_server):
    """RFC 1939 s3: lines starting with "." are byte-stuffed; ".CRLF" ends the response."""
    [dots] = pop3_server.deliver("alice", MESSAGES[1])
    with RawClient.connect(
        pop3_server.host, pop3_server.tls_port, tls=pop3_server.tls.client_context()
    ) as raw:
        raw.line()
        raw.send(f"USER alice\r\nPASS {USERS['alice']}\r\nRETR 1\r\nQUIT\r\n".encode())
        assert raw.line().startswith(b"+OK")
        assert raw.line().startswith(b"+OK")
        reply = raw.multiline()
        assert reply == f"+OK {dots.info.size} octets\r\n".encode() + stuff(dots.text) + b".\r\n"
        assert b"\r\n..leading dot\r\n...two dots\r\n..\r\n" in reply
        assert raw.line().startswith(b"+OK")


def test_eight_bit_octets_survive_the_round_trip(pop3_server):
    """C0011: 8-bit octets are kept as they are, in RETR and in the exact size."""
    [eight_bit] = pop3_server.deliver("alice", MESSAGES[2])
    client = login(pop3_server)
    try:
        _, lines, octets = client.retr(1)
    finally:
        client.quit()
    assert message_text(lines) == eight_bit.text
    assert b"caf\xe9 na\xefve \xff\xfe\x80\x81 \xc3\xa9t\xc3\xa9" in eight_bit.text
    assert octets == eight_bit.info.size == len(eight_bit.text)


def test_five_megabyte_message_is_retrieved_whole(pop3_server):
    """2.1.4: STAT, LIST and RETR agree on the exact size of a large message."""
    [big] = pop3_server.deliver("alice", big_message(5_000_000))
    assert big.info.size > 4_900_000
    client = login(pop3_server)
    try:
        assert client.stat() == (1, big.info.size)
        _, lines, _ = client.retr(1)
    finally:
        client.quit()
    assert message_text(lines) == big.text


def test_command_pipelined_while_a_large_retr_drains_is_answered(start_pop3_server):
    """RFC 2449 s6.6 PIPELINING: a command that arrives during a long reply is answered."""
    server = start_pop3_server({"login_type": "plaintext_login"})
    [big] = server.deliver("alice", big_message(5_000_000))
    with RawClient.connect(server.host, server.port) as raw:
        raw.line()
        raw.send(f"USER alice\r\nPASS {USERS['alice']}\r\n".encode())
        assert [line[:3] for line in raw.lines(2)] == [b"+OK", b"+OK"]
        raw.send(b"RETR 1\r\n")
        # Not reading yet lets the socket buffers fill, so the server is waiting for the
        # client to drain the reply when QUIT arrives: the case that used to hang.
        time.sleep(0.3)
        raw.send(b"QUIT\r\n")
        assert len(raw.multiline()) > big.info.size
        assert raw.line() == b"+OK signing off, 0 messages deleted\r\n"


@pytest.mark.parametrize("lines", [0, 3])
def test_top_returns_headers_and_n_body_lines_rfc1939_s7(pop3_server, lines):
    """RFC 1939 s7 TOP: the header, the blank line, then n lines of the body (0: none)."""
    raw = (
        b"From: carol@example.org\r\nSubject: top\r\n\r\nbody 1\r\n.body 2\r\nbody 3\r\n"
        b"body 4\r\nbody 5\r\n"
    )
    [message] = pop3_server.deliver("alice", raw)
    client = login(pop3_server)
    try:
        _, got, _ = client.top(1, lines)
    finally:
        client.quit()
    expected = b"From: carol@example.org\r\nSubject: top\r\n\r\n"
    expected += b"".join([b"body 1\r\n", b".body 2\r\n", b"body 3\r\n"][:lines])
    assert message_text(got) == expected
    assert stuff(expected) == top_lines(stuff(message.text), lines)


def test_dele_then_quit_removes_exactly_the_marked_messages_v0006(pop3_server):
    """V0006: UPDATE removes the messages marked deleted, and no other."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    client = login(pop3_server)
    assert client.dele(2).startswith(b"+OK")
    assert client.dele(4).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"-ERR message 2 is marked as deleted"):
        client.retr(2)
    assert client.stat() == (
        3,
        sum(d.info.size for d in delivered) - delivered[1].info.size - delivered[3].info.size,
    )
    assert client.quit() == b"+OK signing off, 2 messages deleted"
    kept = [delivered[0], delivered[2], delivered[4]]
    assert pop3_server.uids("alice") == [d.info.uid for d in kept]
    assert_mailbox(pop3_server, "alice", kept)


def test_dele_then_dropped_connection_removes_nothing_rfc1939_s6(pop3_server):
    """RFC 1939 s6: without QUIT the session never enters UPDATE, so nothing is removed."""
    delivered = pop3_server.deliver("alice", *MESSAGES)
    client = login(pop3_server)
    client.dele(1)
    client.dele(3)
    client.sock.close()  # no QUIT
    client.file.close()
    wait_until(lambda: pop3_server.session_count() == 0)
    assert_mailbox(pop3_server, "alice", delivered)


def test_rset_unmarks_every_deleted_message_rfc1939_s5(pop3_server):
    """RFC 1939 s5 RSET: messages marked as deleted are unmarked."""
    delivered = pop3_server.deliver("alice", *MESSAGES[:3])
    client = login(pop3_server)
    client.dele(1)
    client.dele(2)
    size = sum(d.info.size for d in delivered)
    assert client.rset() == f"+OK maildrop has 3 messages ({size} octets)".encode()
    assert client.stat() == (3, size)
    client.dele(3)
    assert client.quit() == b"+OK signing off, 1 message deleted"
    assert_mailbox(pop3_server, "alice", delivered[:2])


def test_unique_ids_increase_and_are_never_reused_c0007_c0009(pop3_server):
    """C0007-C0009: decimal unique-ids, increasing, not reused after a deletion."""
    first = pop3_server.deliver("alice", *MESSAGES[:2])
    client = login(pop3_server)
    client.dele(2)
    client.quit()
    [third] = pop3_server.deliver("alice", MESSAGES[2])
    assert third.info.uid > first[1].info.uid > first[0].info.uid
    client = login(pop3_server)
    try:
        _, uidls, _ = client.uidl()
    finally:
        client.quit()
    assert uidls == [f"1 {first[0].info.uid}".encode(), f"2 {third.info.uid}".encode()]
