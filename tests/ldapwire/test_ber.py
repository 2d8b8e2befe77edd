"""The BER subset of RFC 4511 section 5.1, byte for byte (X.690's own examples where it
has them)."""

from __future__ import annotations

import pytest

from popbox.ldapwire import ber
from popbox.ldapwire.ber import BerError, Element


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),  # the sign bit needs a leading zero octet
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
        (2**31 - 1, "02047fffffff"),
    ],
)
def test_integers_are_minimal_twos_complement_x690_s8_3(value, encoded):
    assert ber.integer(value).hex() == encoded
    item = ber.element(bytes.fromhex(encoded), 0, len(encoded) // 2)
    assert ber.read_integer(bytes.fromhex(encoded), item) == value


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, "0400"), (127, "047f"), (128, "048180"), (255, "0481ff"), (256, "04820100")],
)
def test_lengths_use_the_short_form_below_128_and_the_fewest_octets_above(size, header):
    encoded = ber.octets(b"x" * size)
    assert encoded[: len(header) // 2].hex() == header
    assert len(encoded) == len(header) // 2 + size


def test_true_is_ff_rfc4511_s5_1():
    assert ber.boolean(value=True).hex() == "0101ff"
    assert ber.boolean(value=False).hex() == "010100"


def test_elements_are_read_in_place():
    data = ber.sequence(ber.integer(5), ber.octets(b"ann"))
    outer = ber.element(data, 0, len(data))
    assert outer == Element(0x30, 2, len(data))
    first, second = ber.children(data, outer)
    assert ber.read_integer(data, first) == 5
    assert data[second.start : second.stop] == b"ann"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("30", "cut short"),
        ("3080", "indefinite length"),
        ("3085ffffffffff", "5-octet length"),
        ("3005020101", "runs past"),
        ("1f0100", "high-tag-number"),
        ("3082", "length at octet 0 is cut short"),
    ],
)
def test_malformed_elements_are_errors_naming_the_problem(data, problem):
    raw = bytes.fromhex(data)
    with pytest.raises(BerError, match=problem):
        ber.element(raw, 0, len(raw))


def test_an_empty_integer_is_an_error():
    raw = bytes.fromhex("0200")
    with pytest.raises(BerError, match="empty integer"):
        ber.read_integer(raw, ber.element(raw, 0, 2))


def test_frame_length_waits_for_the_header_then_knows_the_size():
    message = ber.octets(b"y" * 300)
    assert ber.frame_length(message[:1], 1000) is None
    assert ber.frame_length(message[:3], 1000) is None  # 0x82 needs two more octets
    assert ber.frame_length(message[:4], 1000) == len(message)


def test_frame_length_refuses_a_message_over_the_limit_before_it_arrives():
    with pytest.raises(BerError, match="over the 1000-octet limit"):
        ber.frame_length(bytes.fromhex("3084ffffffff"), 1000)
