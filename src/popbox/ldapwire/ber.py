"""The subset of BER (ITU-T X.690) that LDAP uses: RFC 4511 section 5.1.

LDAP messages are BER with restrictions: definite lengths only, low tag numbers only
(every tag in RFC 4511's ASN.1 is below 31), and a boolean TRUE sent as 0xFF.  That
subset is small enough to write out here, which is why popbox does not pull in a
general ASN.1 library for it (pyasn1's generality was most of ldap3's cost per login).

Encoding builds bytes from the inside out (``tlv``).  Decoding never copies: an element
is its tag and the ``start``/``stop`` offsets of its contents in the message.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BerError",
    "Element",
    "boolean",
    "children",
    "element",
    "enumerated",
    "frame_length",
    "integer",
    "octets",
    "read_integer",
    "sequence",
    "tlv",
]

SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
INTEGER = 0x02
ENUMERATED = 0x0A
BOOLEAN = 0x01
_MAX_LENGTH_OCTETS = 4  # a length field of more than 4 octets would be over 4 GiB


class BerError(ValueError):
    """Octets that are not the BER an LDAP server may send (the message says where)."""


class Element(NamedTuple):
    tag: int
    start: int  # first octet of the contents
    stop: int  # one past the last


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def integer(value: int, tag: int = INTEGER) -> bytes:
    # The minimal two's-complement form (X.690 section 8.3.2).
    width = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return tlv(tag, value.to_bytes(width, "big", signed=True))


def enumerated(value: int) -> bytes:
    return integer(value, ENUMERATED)


def boolean(*, value: bool, tag: int = BOOLEAN) -> bytes:
    return tlv(tag, b"\xff" if value else b"\x00")


def octets(value: bytes, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, value)


def sequence(*parts: bytes, tag: int = SEQUENCE) -> bytes:
    return tlv(tag, b"".join(parts))


def frame_length(data: bytes | bytearray, limit: int) -> int | None:
    """The size of the element that starts ``data``, or None while its header is
    incomplete.  An element over ``limit`` octets is an error, so that a garbage
    length cannot make the reader buffer gigabytes."""
    if len(data) < 2:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    _check_length_form(count, 0)
    if len(data) < 2 + count:
        return None
    size = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    if size > limit:
        raise BerError(f"a message of {size} octets is over the {limit}-octet limit")
    return size


def element(data: bytes, position: int, end: int) -> Element:
    """The element whose header starts at ``position``, which must end by ``end``."""
    if position + 2 > end:
        raise BerError(f"an element is cut short at octet {position}")
    tag = data[position]
    if tag & 0x1F == 0x1F:
        raise BerError(f"tag {tag:#04x} at octet {position} uses the high-tag-number form")
    first = data[position + 1]
    start = position + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        _check_length_form(count, position)
        if start + count > end:
            raise BerError(f"the length at octet {position} is cut short")
        size = int.from_bytes(data[start : start + count], "big")
        start += count
    stop = start + size
    if stop > end:
        raise BerError(f"the element at octet {position} runs past its container")
    return Element(tag, start, stop)


def children(data: bytes, parent: Element) -> list[Element]:
    found = []
    position = parent.start
    while position < parent.stop:
        child = element(data, position, parent.stop)
        found.append(child)
        position = child.stop
    return found


def read_integer(data: bytes, item: Element) -> int:
    if item.start == item.stop:
        raise BerError(f"an empty integer at octet {item.start}")
    return int.from_bytes(data[item.start : item.stop], "big", signed=True)


def _check_length_form(count: int, position: int) -> None:
    if count == 0:
        raise BerError(f"an indefinite length at octet {position} (RFC 4511 5.1 forbids it)")
    if count > _MAX_LENGTH_OCTETS:
        raise BerError(f"a {count}-octet length field at octet {position}")
