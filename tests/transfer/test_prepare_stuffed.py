"""``prepare_stuffed`` is ``prepare(unstuff(...))`` for every input (C0011, RFC 1939 s3).

The import stores a RETR answer as it came when that gives the same message; any input
where it would not (bare LF or CR, NUL, a dot-line left unstuffed by a faulty source, a
first line that is not a header field) must take the slow path and come out the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.store.message import MalformedMessage, prepare, prepare_stuffed, stuff, unstuff

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
