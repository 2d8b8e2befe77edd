"""SASLprep (RFC 4013), the stringprep profile SCRAM applies to passwords and names.

POP3's USER and PASS apply it too once the server lists ``UTF8 USER`` (RFC 6856 s2.2),
which is why it lives in the protocol core: it needs nothing but the standard library.

SCRAM clients hash ``SASLprep(password)`` (RFC 5802 s2.2), so the server must store its
verifier from the same string or a user with, say, a non-breaking space or a
compatibility character in the password could never log in.  The tables are the
standard library's ``stringprep`` (RFC 3454); this module only strings them together.
For the common ASCII password without control characters the result is the input.
"""

from __future__ import annotations

import stringprep
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SaslprepError", "saslprep"]


class SaslprepError(ValueError):
    """The string holds a character SASLprep prohibits, or breaks the bidi rule."""


_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,  # non-ASCII space (mapped first, so never seen here)
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(text: str, *, query: bool = False) -> str:
    """Return the SASLprep form of ``text`` (RFC 4013 s2), or raise ``SaslprepError``.

    A stored string (a password being set) may hold no code point unassigned in Unicode
    3.2; a query string (what a client sends to log in) may (RFC 4013 s2.5, RFC 3454 s7).
    """
    # s2.1 mapping: non-ASCII spaces become SPACE, "commonly mapped to nothing" vanish.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    normal = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)  # s2.2
    for ch in normal:
        if any(table(ch) for table in _PROHIBITED):  # s2.3
            raise SaslprepError(f"prohibited character U+{ord(ch):04X}")
        if not query and stringprep.in_table_a1(ch):  # s2.5
            raise SaslprepError(f"unassigned character U+{ord(ch):04X}")
    _check_bidi(normal)
    return normal


def _check_bidi(text: str) -> None:
    """RFC 3454 s6: a string with right-to-left characters must start and end with one."""
    if not any(stringprep.in_table_d1(ch) for ch in text):
        return
    if any(stringprep.in_table_d2(ch) for ch in text):
        raise SaslprepError("mixes right-to-left and left-to-right characters")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        raise SaslprepError("right-to-left text must start and end with such a character")
