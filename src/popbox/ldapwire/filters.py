"""Search filters: RFC 4515's string form, escaped and compiled to RFC 4511's BER.

``escape_value`` makes any text one literal assertion value (RFC 4515 section 3: ``*``,
``(``, ``)``, ``\\`` and NUL written as a backslash and two hex digits).
``compile_filter`` parses a whole filter string, so that a config's filter is checked
once at start (with an error naming the position of the problem) and every login's
filter is the BER of exactly what was written.  Grammar (section 3)::

    filter     = "(" ( "&" 1*filter / "|" 1*filter / "!" filter / item ) ")"
    item       = attr ( "=" / "~=" / ">=" / "<=" ) value      ; equality, approx, order
               / attr "=*"                                      ; presence
               / attr "=" [initial] "*" *(any "*") [final]      ; substrings
               / [attr] [":dn"] [":" oid] ":=" value            ; extensible match
"""

from __future__ import annotations

import re

from popbox.ldapwire import ber

__all__ = ["FilterError", "compile_filter", "escape_value"]

_AND, _OR, _NOT = 0xA0, 0xA1, 0xA2
_EQUALITY, _SUBSTRINGS, _GREATER, _LESS, _PRESENT, _APPROX, _EXTENSIBLE = (
    0xA3, 0xA4, 0xA5, 0xA6, 0x87, 0xA8, 0xA9,
)  # fmt: skip
_INITIAL, _ANY, _FINAL = 0x80, 0x81, 0x82
_RULE, _TYPE, _MATCH_VALUE, _DN_ATTRIBUTES = 0x81, 0x82, 0x83, 0x84
_SPECIAL = frozenset("*()\\\x00")
# attributedescription (RFC 4512 section 2.5): a name or numeric OID, then ;options.
_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*")
_OID = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*")
_HEX = frozenset("0123456789abcdefABCDEF")


class FilterError(ValueError):
    """Not a filter by RFC 4515; the message names the problem and its position."""


def escape_value(value: str) -> str:
    return "".join(f"\\{ord(c):02x}" if c in _SPECIAL else c for c in value)


def compile_filter(text: str) -> bytes:
    parser = _Parser(text)
    encoded = parser.filter()
    if parser.position != len(text):
        raise parser.error("text after the filter's closing parenthesis")
    return encoded


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def error(self, problem: str) -> FilterError:
        return FilterError(f"{problem} at position {self.position + 1} of {self.text!r}")

    def filter(self) -> bytes:
        self.expect("(")
        kind = self.peek()
        if kind in "&|":
            self.position += 1
            parts = [self.filter()]
            while self.peek() == "(":
                parts.append(self.filter())
            encoded = ber.sequence(*parts, tag=_AND if kind == "&" else _OR)
        elif kind == "!":
            self.position += 1
            encoded = ber.tlv(_NOT, self.filter())
        else:
            encoded = self.item()
        self.expect(")")
        return encoded

    def peek(self) -> str:
        if self.position >= len(self.text):
            raise self.error("the filter ends early")
        return self.text[self.position]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"{char!r} expected, {self.peek()!r} found")
        self.position += 1

    def item(self) -> bytes:
        start = self.position
        stop = self.text.find(")", start)
        if stop < 0:
            raise self.error("the filter ends early")
        body = self.text[start:stop]
        if "(" in body:
            raise self.error("an unescaped '(' inside an item")
        equals = body.find("=")
        if equals <= 0 and not body.startswith(":"):
            raise self.error("an item with no attribute and '='")
        left, value = body[:equals], body[equals + 1 :]
        if left.endswith(":"):
            encoded = self.extensible(left[:-1], value)
        elif left[-1:] in ("~", ">", "<"):
            tag = {"~": _APPROX, ">": _GREATER, "<": _LESS}[left[-1]]
            encoded = ber.sequence(self.attribute(left[:-1]), self.value(value), tag=tag)
        elif value == "*":
            encoded = ber.tlv(_PRESENT, self.name(left))
        elif "*" in value:
            encoded = self.substrings(left, value)
        else:
            encoded = ber.sequence(self.attribute(left), self.value(value), tag=_EQUALITY)
        self.position = stop
        return encoded

    def substrings(self, left: str, value: str) -> bytes:
        pieces = value.split("*")
        parts = []
        if pieces[0]:
            parts.append(ber.tlv(_INITIAL, self.octets(pieces[0])))
        # An empty piece between two stars constrains nothing ("a**b" is "a*b").
        parts.extend(ber.tlv(_ANY, self.octets(p)) for p in pieces[1:-1] if p)
        if pieces[-1]:
            parts.append(ber.tlv(_FINAL, self.octets(pieces[-1])))
        return ber.sequence(self.attribute(left), ber.sequence(*parts), tag=_SUBSTRINGS)

    def extensible(self, left: str, value: str) -> bytes:
        names = left.split(":")
        attribute = names.pop(0)
        dn = bool(names) and names[0].lower() == "dn"
        if dn:
            names.pop(0)
        if len(names) > 1 or (names and not _OID.fullmatch(names[0])):
            raise self.error(f"{left!r} is not attr[:dn][:rule]")
        if not attribute and not names:
            raise self.error("an extensible match needs an attribute or a matching rule")
        parts = []
        if names:
            parts.append(ber.octets(names[0].encode("ascii"), _RULE))
        if attribute:
            parts.append(ber.octets(self.name(attribute), _TYPE))
        parts.append(ber.octets(self.octets(value), _MATCH_VALUE))
        if dn:
            parts.append(ber.boolean(value=True, tag=_DN_ATTRIBUTES))
        return ber.sequence(*parts, tag=_EXTENSIBLE)

    def attribute(self, name: str) -> bytes:
        return ber.octets(self.name(name))

    def name(self, name: str) -> bytes:
        if not _ATTRIBUTE.fullmatch(name):
            raise self.error(f"{name!r} is not an attribute description")
        return name.encode("ascii")

    def value(self, text: str) -> bytes:
        if "*" in text:
            raise self.error("an unescaped '*' in a value")
        return ber.octets(self.octets(text))

    def octets(self, text: str) -> bytes:
        """The assertion value's octets: UTF-8, with each \\XX escape undone."""
        if "\x00" in text:
            raise self.error("an unescaped NUL in a value")
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error("a value that is not Unicode text") from None
        if "\\" not in text:
            return encoded
        out = bytearray()
        pieces = text.split("\\")
        out += pieces[0].encode("utf-8")
        for piece in pieces[1:]:
            if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
                raise self.error("a backslash not followed by two hex digits")
            out.append(int(piece[:2], 16))
            out += piece[2:].encode("utf-8")
        return bytes(out)
