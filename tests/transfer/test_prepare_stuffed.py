"""``prepare_stuffed`` is ``prepare(unstuff(...))`` for every input (C0011, RFC 1939 s3).

The import stores a RETR answer as it came when that gives the same message; any input
where it would not (bare LF or CR, NUL, a dot-line left unstuffed by a faulty source, a
first line that is not a header field) must take the slow path and come out the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.store.base import NewMessage
from popbox.store.message import MalformedMessage, prepare, prepare_stuffed, stuff, unstuff
from popbox.store.spooled import PIECE, SpooledWire, WireSpool, wire_octets

PIECES = [b"\r\n", b"\n", b"\r", b".", b"..", b"\0", b"Subject: x", b"a", b":", b" ", b"\xff"]


def both(wire: bytes) -> tuple[object, object]:
    def attempt(build):
        try:
            return build()
        except MalformedMessage as exc:
            return type(exc)

    fast = attempt(lambda: prepare_stuffed(wire, legacy_uidl="u-1", received_at=5.0))
    slow = attempt(lambda: prepare(unstuff(wire), legacy_uidl="u-1", received_at=5.0))
    return fast, slow


@given(st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join))
def test_any_octets_come_out_as_prepare_of_the_unstuffed_text(wire: bytes) -> None:
    fast, slow = both(wire)
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    [
        b"Subject: a\r\n\r\n.\r\n..\r\n.x\r\nend\r\n",
        b"\r\nno header\r\n",
        b"Subject: 8bit\r\n\r\n\xe9\xff\r\n",
        b"Subject: long\r\n\r\n" + b"y" * 100_000 + b"\r\n",
    ],
)
def test_a_well_formed_retr_answer_is_stored_as_it_came(text: bytes) -> None:
    wire = stuff(text)
    message = prepare_stuffed(wire)
    assert message.wire is wire  # no copy
    assert message == prepare(text)


def spooled(wire: bytes) -> SpooledWire:
    spool = WireSpool(None)
    for start in range(0, len(wire), 100_000):
        spool.write(wire[start : start + 100_000])
    kept = spool.finish()
    assert isinstance(kept, SpooledWire)
    return kept


@pytest.mark.parametrize("at", range(-4, 5))
@pytest.mark.parametrize(
    "pattern", [b"\r\n..x", b"\r\n.x", b"\r\nx", b"\nx", b"\rx", b"\0", b"\r\n"]
)
def test_a_spooled_answer_is_judged_as_the_same_octets_in_memory(pattern: bytes, at: int) -> None:
    """RFC 1939 s3: the checks that keep an answer as it came see across the pieces a
    spooled one is read in, wherever a line end or a stuffed dot falls."""
    head = b"Subject: big\r\n\r\n"
    filler = b"y" * (PIECE + at - len(head))
    wire = head + filler + pattern + b"\r\nend\r\n"
    if pattern == b"\r\n":
        wire = head + b"y" * (2 * PIECE + at - len(head) - 2) + b"\r\n"  # near a piece end
    body = spooled(wire)
    try:
        expected = both(wire)[0]
        if expected is MalformedMessage:
            with pytest.raises(MalformedMessage):
                prepare_stuffed(body, legacy_uidl="u-1", received_at=5.0)
            return
        got = prepare_stuffed(body, legacy_uidl="u-1", received_at=5.0)
        assert isinstance(expected, NewMessage)
        assert got.size == expected.size
        assert wire_octets(got.wire) == wire_octets(expected.wire)
        # Kept in its file exactly when the octets in memory are kept as they came.
        assert (got.wire is body) == (expected.wire is wire)
    finally:
        body.close()
