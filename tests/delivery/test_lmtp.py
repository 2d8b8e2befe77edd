"""LMTP delivery (RFC 2033) over real sockets, checked through the store and POP3."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from mailserver import (
    LmtpClient,
    MailServer,
    lmtp_transaction,
    pop3_retrieve,
    split_trace,
    stuff,
)
from popbox.store import SQLITE_FILE_NAME
from popbox.store.message import unstuff

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: alice@example.com\r\n"
    b"Subject: greetings\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b".a line that starts with a dot\r\n"
    b"\r\n"
    b"bye\r\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path)
    running.add_user("alice")
    running.add_user("bob")
    yield running
    running.stop()


def lmtp(server: MailServer) -> tuple[str, int]:
    return ("127.0.0.1", server.port("lmtp"))


def stored(server: MailServer, name: str) -> list[bytes]:
    """Every message of ``name`` as RETR sends it (before byte-stuffing)."""
    infos = server.call(server.store.snapshot(name))
    return [unstuff(server.call(server.store.fetch(name, i.uid)) or b"") for i in infos]


def test_lmtp_data_replies_once_per_accepted_rcpt_rfc2033_s4_2(server: MailServer) -> None:
    """RFC 2033 s4.2: "after the final ".", the server returns one reply for each
    previously successful RCPT command in the mail transaction, in the order that the
    RCPT commands were issued"."""
    rcpt, data = lmtp_transaction(lmtp(server), ["alice@example.com", "nobody", "bob"], MESSAGE)
    assert rcpt[0].startswith("250 2.1.5")
    assert rcpt[1] == "550 5.1.1 <nobody>: no such mailbox here"
    assert data == [
        "250 2.1.5 <alice@example.com> delivered as message 1",
        "250 2.1.5 <bob> delivered as message 1",
    ]
    for name, address in (("alice", b"alice@example.com"), ("bob", b"bob")):
        [message] = stored(server, name)
        trace, rest = split_trace(message)
        assert rest == MESSAGE
        assert trace[0] == b"Return-Path: <sender@example.org>"
        assert trace[1] == b"Delivered-To: " + address
        assert b"by mx.test (popbox) with LMTP id " in trace[3]
        assert b"for <" + address + b">; " in trace[4]


def test_lmtp_message_fetched_over_pop3_byte_for_byte(server: MailServer) -> None:
    """DESIGN section 1: LMTP-deliver, POP3-retrieve; only the trace lines are added."""
    lmtp_transaction(lmtp(server), ["alice"], MESSAGE)
    [fetched] = pop3_retrieve(server, "alice")
    assert split_trace(fetched)[1] == MESSAGE


def test_unknown_recipient_refused_at_rcpt_with_5_1_1(server: MailServer) -> None:
    """RFC 3463 X.1.1: bad destination mailbox address; nothing reaches DATA."""
    rcpt, data = lmtp_transaction(lmtp(server), ["nobody@example.com"], MESSAGE)
    assert rcpt == ["550 5.1.1 <nobody@example.com>: no such mailbox here"]
    assert data == []


def test_lhlo_announces_what_rfc2033_requires(server: MailServer) -> None:
    """RFC 2033 s5: LMTP servers implement PIPELINING and ENHANCEDSTATUSCODES; popbox
    also takes 8-bit and SMTPUTF8 mail and announces its size limit."""
    client = LmtpClient(lmtp(server))
    try:
        assert client.greeting.startswith("220 mx.test ")
        assert client.command("EHLO x").startswith("500")  # LMTP has no EHLO
        lines = client.command("LHLO client.test").split("\n")
        keywords = [line[4:] for line in lines]
        assert keywords[0] == "mx.test"
        assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"} <= set(keywords)
        assert f"SIZE {50 * 1024 * 1024}" in keywords
        # aiosmtpd's own replies get an enhanced code too (RFC 2034 s3).
        assert client.command("RCPT TO:<alice>").startswith("503 5.5.1 ")
        assert client.command("DATA").startswith("503 5.5.1 ")
        assert client.command("QUIT").startswith("221 2.0.0 ")
    finally:
        client.close()


def test_pipelined_transactions_get_every_reply_in_order_rfc2920(server: MailServer) -> None:
    """RFC 2920 (required by RFC 2033 s5): a whole transaction in one write."""
    client = LmtpClient(lmtp(server))
    try:
        script = b"".join(
            [
                b"LHLO client.test\r\n",
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n",
                stuff(MESSAGE) + b".\r\n",
                b"MAIL FROM:<>\r\nRCPT TO:<bob>\r\nDATA\r\n",
                stuff(b"Subject: bounce\r\n\r\nx\r\n") + b".\r\nQUIT\r\n",
            ]
        )
        client.send(script)
        replies = [client.reply() for _ in range(12)]
    finally:
        client.close()
    codes = [reply[:3] for reply in replies]
    # LHLO; MAIL RCPT RCPT DATA, a reply per recipient; MAIL RCPT DATA, one; QUIT
    expected = ["250", "250", "250", "250", "354", "250", "250", "250", "250", "354", "250"]
    assert codes == [*expected, "221"]
    assert stored(server, "bob")[1].startswith(b"Return-Path: <>\r\n")


def test_message_is_committed_before_its_250(server: MailServer, tmp_path: Path) -> None:
    """DESIGN section 3: delivery is durable (committed) before it is acknowledged."""
    client = LmtpClient(lmtp(server))
    try:
        client.command("LHLO client.test")
        client.command("MAIL FROM:<a@example.org>")
        client.command("RCPT TO:<alice>")
        client.command("DATA")
        client.send(stuff(MESSAGE) + b".\r\n")
        assert client.reply().startswith("250 ")
        # Another connection to the database, the moment the 250 has arrived.
        with sqlite3.connect(tmp_path / SQLITE_FILE_NAME) as db:
            count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        db.close()
        assert count == 1
    finally:
        client.close()


def test_dots_and_bare_lf_cannot_end_the_data_early_rfc5321_s4_5_2(server: MailServer) -> None:
    """RFC 5321 s4.5.2: a leading dot is doubled by the sender and removed here; only
    CRLF.CRLF ends the data, so a bare-LF "dot line" stays part of the message."""
    smuggle = b"Subject: s\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\r\n..\r\n...x\r\n"
    _, data = lmtp_transaction(lmtp(server), ["alice"], smuggle)
    assert data[0].startswith("250 ")
    [message] = stored(server, "alice")
    body = split_trace(message)[1]
    # All of it arrived (the client doubled the leading dots, popbox undid that), and
    # the bare LFs became CRLF at delivery (C0011).
    assert body == smuggle.replace(b"\n.\n", b"\r\n.\r\n")


def test_long_lines_are_kept_whole(server: MailServer) -> None:
    """Mail may carry lines longer than 1000 octets; they are not cut or refused."""
    long_line = b"x" * 5000 + b"\r\n" + b"." + b"y" * 3000 + b"\r\n"
    message = b"Subject: long\r\n\r\n" + long_line
    _, data = lmtp_transaction(lmtp(server), ["alice"], message)
    assert data[0].startswith("250 ")
    assert split_trace(stored(server, "alice")[0])[1] == message


def test_nul_byte_refused_per_recipient_with_5_6_0_c0011(server: MailServer) -> None:
    """C0011: a NUL byte is handled explicitly, never silently corrupted: refused, and
    the reply names the problem."""
    _, data = lmtp_transaction(lmtp(server), ["alice", "bob"], b"Subject: x\r\n\r\na\0b\r\n")
    assert len(data) == 2
    for reply in data:
        assert reply.startswith("554 5.6.0 ")
        assert "NUL byte at offset" in reply
    assert stored(server, "alice") == stored(server, "bob") == []


def test_8bit_and_utf8_mail_is_kept_intact_rfc6531(server: MailServer) -> None:
    """RFC 6152/6531: 8BITMIME and SMTPUTF8 mail is accepted; 8-bit headers stay as
    they are (C0011) and the Received line says UTF8LMTP."""
    message = "Subject: Grüße\r\nFrom: jürgen@bücher.example\r\n\r\nÄpfel\r\n".encode()
    _, data = lmtp_transaction(
        lmtp(server),
        ["alice"],
        message,
        sender="jürgen@bücher.example",
        mail_params=" BODY=8BITMIME SMTPUTF8",
    )
    assert data[0].startswith("250 ")
    trace, rest = split_trace(stored(server, "alice")[0])
    assert rest == message
    assert trace[0] == "Return-Path: <jürgen@bücher.example>".encode()
    assert b" with UTF8LMTP id " in trace[3]


def test_message_without_header_separator_gets_empty_header_c0011(server: MailServer) -> None:
    """C0011: a message whose first line is no header field gets an empty header
    section, so the trace lines and the body stay apart."""
    _, data = lmtp_transaction(lmtp(server), ["alice"], b"just a body line\r\n")
    assert data[0].startswith("250 ")
    assert split_trace(stored(server, "alice")[0])[1] == b"\r\njust a body line\r\n"


def test_unix_socket_listener(tmp_path: Path) -> None:
    """[lmtp] listen = ["unix:/path"]: the socket Postfix's lmtp:unix: transport uses."""
    path = tmp_path / "lmtp.sock"
    running = MailServer(tmp_path / "data", lmtp={"listen": [f"unix:{path}"]})
    try:
        running.add_user("alice")
        assert running.addresses["lmtp"] == [(f"unix:{path}", -1)]
        assert path.stat().st_mode & 0o777 == 0o666
        _, data = lmtp_transaction(str(path), ["alice"], MESSAGE)
        assert data[0].startswith("250 ")
    finally:
        running.stop()
    assert not path.exists()  # removed on shutdown
