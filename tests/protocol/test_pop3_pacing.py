"""Pacing: however much a client pipelines, one next_event call does a bounded amount.

RFC 2449 s6.6 lets a client send many commands at once and requires them answered in
order; it does not require them answered in one go.  ``next_event`` stops after
``PACE_LINES`` lines or ``PACE_OCTETS`` of queued output with ``Signal.PAUSED``, and the
next call carries on where it stopped (issue 15 item 9: reply amplification).  Full LIST
and UIDL replies are built once and kept until DELE or RSET changes them.
"""

from __future__ import annotations

from popbox.protocol.connection import (
    PACE_LINES,
    PACE_OCTETS,
    ConnectionSettings,
    Pop3Connection,
    Retrieve,
    Signal,
)
from popbox.protocol.testing import logged_in, message_info

THOUSAND = [message_info(uid, 100 + uid) for uid in range(1, 1001)]


def drain(conn: Pop3Connection) -> tuple[bytes, int]:
    """Call next_event until NEED_DATA; the output, and how many calls paused."""
    out: list[bytes] = []
    paused = 0
    while (event := conn.next_event()) is not Signal.NEED_DATA:
        assert event is Signal.PAUSED
        paused += 1
        out += conn.data_to_send()
    return b"".join(out + conn.data_to_send()), paused


def test_cheap_commands_pause_after_pace_lines_and_lose_nothing_rfc2449_s6_6():
    """RFC 2449 s6.6: pipelined commands are all answered, in order, across the pauses."""
    conn = logged_in()
    conn.receive_data(b"NOOP\r\n" * (PACE_LINES * 3 + 5))
    assert conn.next_event() is Signal.PAUSED
    assert conn.data_to_send() == [b"+OK\r\n"] * PACE_LINES
    out, paused = drain(conn)
    assert paused == 2
    assert out == b"+OK\r\n" * (PACE_LINES * 2 + 5)


def test_capa_flood_before_login_pauses_on_output_rfc2449_s6_6():
    """2 MiB of CAPA: each call queues at most about PACE_OCTETS of replies."""
    conn = Pop3Connection(ConnectionSettings())
    conn.data_to_send()  # the greeting
    conn.receive_data(b"CAPA\r\n" * 5000)
    sizes = []
    while (event := conn.next_event()) is Signal.PAUSED:
        sizes.append(sum(map(len, conn.data_to_send())))
    assert event is Signal.NEED_DATA
    assert len(sizes) > 5000 // PACE_LINES - 1
    assert max(sizes) < PACE_OCTETS + 1024


def test_uidl_flood_on_a_large_maildrop_pauses_on_output_rfc1939_s7():
    """UIDL of 1,000 messages is ~10 kB: a few per call, however many were sent."""
    conn = logged_in(THOUSAND)
    conn.receive_data(b"UIDL\r\n" * 200)
    assert conn.next_event() is Signal.PAUSED
    first = conn.data_to_send()
    assert 1 < len(first) < 20
    assert sum(map(len, first)) < PACE_OCTETS + len(first[0])
    assert len(set(first)) == 1  # the same reply each time


def test_kept_listings_follow_dele_and_rset_rfc1939_s5():
    """RFC 1939 s5: a message marked as deleted is not listed; RSET unmarks it."""
    conn = logged_in(THOUSAND[:3])
    conn.receive_data(b"UIDL\r\nLIST\r\nDELE 2\r\nUIDL\r\nLIST\r\nRSET\r\nUIDL\r\n")
    out, _ = drain(conn)
    replies = out.split(b".\r\n")
    assert replies[0] == b"+OK unique-id listing follows\r\n1 1\r\n2 2\r\n3 3\r\n"
    assert replies[1] == b"+OK scan listing follows\r\n1 101\r\n2 102\r\n3 103\r\n"
    assert replies[2] == (
        b"+OK message 2 deleted\r\n+OK unique-id listing follows\r\n1 1\r\n3 3\r\n"
    )
    assert replies[3] == b"+OK scan listing follows\r\n1 101\r\n3 103\r\n"
    assert replies[4].endswith(b"+OK unique-id listing follows\r\n1 1\r\n2 2\r\n3 3\r\n")


def test_status_lines_channel_never_carries_a_body_or_listing_line():
    """The protocol log's channel: status lines only, even for a body line like "+OK"."""
    conn = logged_in(THOUSAND[:2])
    conn.keep_status_lines()
    conn.receive_data(b"UIDL\r\nNOOP\r\nRETR 1\r\n")
    assert isinstance(conn.next_event(), Retrieve)
    conn.send_message(b"+OK this line is the body\r\n")
    drain(conn)
    assert conn.take_status_lines() == [
        b"+OK unique-id listing follows\r\n",
        b"+OK\r\n",
        b"+OK 101 octets\r\n",
    ]
    assert conn.take_status_lines() == []
