"""LDAPv3 messages (RFC 4511 section 4): the requests popbox sends, the replies it reads.

popbox asks a directory four things: StartTLS (4.14), a simple bind (4.2), a search
(4.5.1) and unbind (4.3).  ``*_request`` encode those; ``Framer`` cuts the stream into
messages and ``decode`` reads one into a ``Reply``.  Controls on a reply are skipped (popbox
sends none, so none answer it), and so are the parts of a result it has no use for
(referrals, SASL credentials).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from popbox.ldapwire import ber
from popbox.ldapwire.ber import BerError, Element

__all__ = [
    "BIND_RESPONSE",
    "EXTENDED_RESPONSE",
    "INTERMEDIATE_RESPONSE",
    "NOTICE_OF_DISCONNECTION",
    "SEARCH_DONE",
    "SEARCH_ENTRY",
    "SEARCH_REFERENCE",
    "START_TLS",
    "Framer",
    "Reply",
    "Result",
    "Search",
    "bind_request",
    "decode",
    "describe",
    "search_request",
    "start_tls_request",
    "unbind_request",
]

# protocolOp tags: [APPLICATION n], constructed except UnbindRequest's NULL.
BIND_REQUEST = 0x60
BIND_RESPONSE = 0x61
UNBIND_REQUEST = 0x42
SEARCH_REQUEST = 0x63
SEARCH_ENTRY = 0x64
SEARCH_DONE = 0x65
SEARCH_REFERENCE = 0x73
EXTENDED_REQUEST = 0x77
EXTENDED_RESPONSE = 0x78
INTERMEDIATE_RESPONSE = 0x79
_RESULT_OPS = frozenset({BIND_RESPONSE, SEARCH_DONE, EXTENDED_RESPONSE})
_KNOWN_OPS = _RESULT_OPS | {SEARCH_ENTRY, SEARCH_REFERENCE, INTERMEDIATE_RESPONSE}

START_TLS = "1.3.6.1.4.1.1466.20037"  # RFC 4511 section 4.14.1
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"  # section 4.4.1, message ID 0
_SIMPLE = 0x80  # AuthenticationChoice simple [0]
_EXTENDED_NAME = 0x80  # ExtendedRequest requestName [0]
_RESPONSE_NAME = 0x8A  # ExtendedResponse responseName [10]
_LDAP_VERSION = 3


@dataclass(frozen=True, slots=True)
class Result:
    """An LDAPResult (section 4.1.9)."""

    code: int
    matched_dn: str
    message: str  # the diagnostic message, where Active Directory puts its reasons
    response_name: str = ""  # an ExtendedResponse's OID, when it has one


@dataclass(frozen=True, slots=True)
class Reply:
    message_id: int
    op: int  # the protocolOp tag
    result: Result | None = None  # for BindResponse, SearchResultDone, ExtendedResponse
    dn: str = ""  # a SearchResultEntry's objectName
    attributes: dict[str, tuple[bytes, ...]] = field(default_factory=dict)  # names lower-cased


# RFC 4511 appendix A's names, for log lines: the codes a directory answers popbox with.
RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    13: "confidentialityRequired",
    32: "noSuchObject",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


def describe(result: Result) -> str:
    """``name (code) diagnostic message``, as a log line shows a result."""
    name = RESULT_NAMES.get(result.code, "result")
    return f"{name} ({result.code}) {result.message}".rstrip()


def bind_request(message_id: int, dn: str, password: str) -> bytes:
    return _message(
        message_id,
        ber.sequence(
            ber.integer(_LDAP_VERSION),
            ber.octets(dn.encode("utf-8")),
            ber.octets(password.encode("utf-8"), _SIMPLE),
            tag=BIND_REQUEST,
        ),
    )


@dataclass(frozen=True, slots=True)
class Search:
    """A SearchRequest's parameters (aliases are never dereferenced)."""

    base_dn: str
    scope: int  # 0 base, 1 one level, 2 subtree
    search_filter: bytes  # already encoded (``filters.compile_filter``)
    attributes: tuple[str, ...]
    size_limit: int
    time_limit: int  # seconds


def search_request(message_id: int, search: Search) -> bytes:
    selection = ber.sequence(*(ber.octets(name.encode("ascii")) for name in search.attributes))
    return _message(
        message_id,
        ber.sequence(
            ber.octets(search.base_dn.encode("utf-8")),
            ber.enumerated(search.scope),
            ber.enumerated(0),  # derefAliases: neverDerefAliases
            ber.integer(search.size_limit),
            ber.integer(search.time_limit),
            ber.boolean(value=False),  # typesOnly
            search.search_filter,
            selection,
            tag=SEARCH_REQUEST,
        ),
    )


def start_tls_request(message_id: int) -> bytes:
    return _message(
        message_id,
        ber.sequence(ber.octets(START_TLS.encode("ascii"), _EXTENDED_NAME), tag=EXTENDED_REQUEST),
    )


def unbind_request(message_id: int) -> bytes:
    return _message(message_id, bytes((UNBIND_REQUEST, 0)))


def _message(message_id: int, op: bytes) -> bytes:
    return ber.sequence(ber.integer(message_id), op)


class Framer:
    """Cuts a byte stream into LDAPMessages; a message over ``limit`` octets, or one
    that does not start as a SEQUENCE, raises ``BerError`` (the stream is lost)."""

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        messages = []
        while buffer:
            if buffer[0] != ber.SEQUENCE:
                raise BerError(f"a reply starting with {bytes(buffer[:8])!r} is not LDAP")
            size = ber.frame_length(buffer, self._limit)
            if size is None or size > len(buffer):
                break
            messages.append(bytes(buffer[:size]))
            del buffer[:size]
        return messages


def decode(data: bytes) -> Reply:
    """One whole LDAPMessage, as ``Framer`` cut it."""
    message = ber.element(data, 0, len(data))
    parts = ber.children(data, message)
    if len(parts) < 2 or parts[0].tag != ber.INTEGER:
        raise BerError("an LDAPMessage without a message ID and an operation")
    message_id = ber.read_integer(data, parts[0])
    op = parts[1]
    if op.tag not in _KNOWN_OPS:
        raise BerError(f"operation tag {op.tag:#04x} is not a reply")
    if op.tag in _RESULT_OPS:
        return Reply(message_id, op.tag, result=_result(data, op))
    if op.tag == SEARCH_ENTRY:
        dn, attributes = _entry(data, op)
        return Reply(message_id, op.tag, dn=dn, attributes=attributes)
    return Reply(message_id, op.tag)  # a reference or an intermediate response


def _result(data: bytes, op: Element) -> Result:
    fields = ber.children(data, op)
    if len(fields) < 3 or fields[0].tag != ber.ENUMERATED:
        raise BerError("an LDAPResult without resultCode, matchedDN and diagnosticMessage")
    name = next((f for f in fields[3:] if f.tag == _RESPONSE_NAME), None)
    return Result(
        code=ber.read_integer(data, fields[0]),
        matched_dn=_text(data, fields[1]),
        message=_text(data, fields[2]),
        response_name=_text(data, name) if name else "",
    )


def _entry(data: bytes, op: Element) -> tuple[str, dict[str, tuple[bytes, ...]]]:
    fields = ber.children(data, op)
    if len(fields) != 2 or fields[0].tag != ber.OCTET_STRING or fields[1].tag != ber.SEQUENCE:
        raise BerError("a SearchResultEntry without objectName and attributes")
    attributes: dict[str, tuple[bytes, ...]] = {}
    for attribute in ber.children(data, fields[1]):
        pair = ber.children(data, attribute)
        if len(pair) != 2 or pair[1].tag != ber.SET:
            raise BerError("a PartialAttribute without type and vals")
        values = tuple(data[v.start : v.stop] for v in ber.children(data, pair[1]))
        attributes[_text(data, pair[0]).lower()] = values
    return _text(data, fields[0]), attributes


def _text(data: bytes, item: Element) -> str:
    # LDAPString is UTF-8 (section 4.1.2); a server's bad octets must not stop the reply
    # from being read, and only DNs and diagnostics are read this way.
    return data[item.start : item.stop].decode("utf-8", "replace")
