"""PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt), sans-IO.

Theory of operation: a load balancer that opens a connection to popbox on behalf of a
client first sends one header saying who the client is, then relays the client's bytes.
``parse_proxy_header`` is fed everything received so far from the start of the
connection and answers ``None`` (not enough bytes yet), a ``ProxyHeader`` (whose
``length`` says how many bytes the header took: everything after it belongs to the
client, TLS handshake included), or raises ``ProxyHeaderError``.  It never needs more
than ``MAX_V1_LENGTH`` bytes to decide for v1, nor more than the length field announces
for v2, so the I/O layer can read exactly the header and no client byte.

The header is only believed from ``TrustedNetworks``: anybody else could claim any
address.  From a trusted peer the header is required (POP3 servers speak first, so a
missing header cannot be detected by waiting); from anybody else it is just a line that
is not a POP3 command.

A ``source`` of None means "use the socket's own address": the v2 LOCAL command (the
proxy's own health checks), v2 with an unspecified or UNIX family, and v1 ``UNKNOWN``.
v2 TLVs (SSL, ALPN, unique id, ...) are skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "MAX_V1_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "TrustedNetworks",
    "parse_proxy_header",
]

V1_PREFIX: Final = b"PROXY "
MAX_V1_LENGTH: Final = 107  # "the maximum line length is 107 bytes including the CRLF"
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH: Final = 16  # signature, version/command, family/transport, length

_V2_VERSION = 0x2
_V2_LOCAL = 0x0
_V2_PROXY = 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_TRANSPORT_UNSPEC, _TRANSPORT_STREAM = 0x0, 0x1
_ADDRESS_BLOCK = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}

Address = tuple[str, int]


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    source: Address | None  # the client; None: keep the socket's peer address
    destination: Address | None  # the address the client connected to
    length: int  # octets the header occupies at the start of the stream


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """Parse a header at the start of ``data``; None when more bytes are needed.

    ``data`` is everything received so far; bytes past the header are ignored (they
    are the client's).  Raises ``ProxyHeaderError`` as soon as the bytes cannot become
    a valid header, so a peer cannot hold the connection open by trickling garbage.
    """
    if data[:1] == V2_SIGNATURE[:1]:
        return _parse_v2(data)
    return _parse_v1(data)


# -- version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 110\r\n" ---------------------


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        raise ProxyHeaderError("does not start with a PROXY protocol signature")
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(data) >= MAX_V1_LENGTH or b"\n" in data[:MAX_V1_LENGTH]:
            raise ProxyHeaderError("v1 header has no CRLF within 107 octets")
        return None
    line = data[:end]
    length = end + 2
    fields = line.split(b" ")
    if fields[0] != b"PROXY" or len(fields) < 2:
        raise ProxyHeaderError("v1 header must start with PROXY and a protocol")
    if fields[1] == b"UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF" after UNKNOWN.
        return ProxyHeader(1, None, None, length)
    if fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("v1 protocol must be TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise ProxyHeaderError("v1 header needs exactly: protocol, two addresses, two ports")
    family = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], fields[4], family)
    destination = _v1_address(fields[3], fields[5], family)
    return ProxyHeader(1, source, destination, length)


def _v1_address(host: bytes, port: bytes, family: int) -> Address:
    try:
        text = host.decode("ascii")
        address = ipaddress.ip_address(text)
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"v1 address {host!r} is not an IP address") from None
    if address.version != family:
        raise ProxyHeaderError(f"v1 address {text} is not an IPv{family} address")
    # Leading zeros are refused: "0110" would be 110 to us and 72 to an octal reader.
    if not port.isdigit() or not port.isascii() or (port.startswith(b"0") and port != b"0"):
        raise ProxyHeaderError(f"v1 port {port!r} is not a decimal number")
    number = int(port)
    if number > 65535:
        raise ProxyHeaderError(f"v1 port {number} is out of range")
    return str(address), number


# -- version 2: binary -----------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | None:
    head = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(head):
        raise ProxyHeaderError("does not start with a PROXY protocol signature")
    if len(data) < V2_FIXED_LENGTH:
        # The version/command byte is checked as soon as it is there.
        if len(data) > len(V2_SIGNATURE):
            _v2_command(data[12])
        return None
    command = _v2_command(data[12])
    family, transport = data[13] >> 4, data[13] & 0x0F
    body_length = int.from_bytes(data[14:16], "big")
    length = V2_FIXED_LENGTH + body_length
    if family not in (_AF_UNSPEC, *_ADDRESS_BLOCK):
        raise ProxyHeaderError(f"v2 address family {family} is not defined")
    if transport > 2:
        raise ProxyHeaderError(f"v2 transport protocol {transport} is not defined")
    needed = _ADDRESS_BLOCK.get(family, 0)
    if command == _V2_PROXY and body_length < needed:
        raise ProxyHeaderError(
            f"v2 length {body_length} is shorter than the {needed}-octet address block"
        )
    if len(data) < length:
        return None
    if command == _V2_LOCAL or family in (_AF_UNSPEC, _AF_UNIX):
        # LOCAL: the proxy speaks for itself (health checks); the address block, if any,
        # is to be ignored.  UNSPEC and UNIX carry no address we could use.
        return ProxyHeader(2, None, None, length)
    if transport not in (_TRANSPORT_UNSPEC, _TRANSPORT_STREAM):
        raise ProxyHeaderError("v2 header describes a datagram connection, not a stream")
    block = data[V2_FIXED_LENGTH : V2_FIXED_LENGTH + needed]
    size = 4 if family == _AF_INET else 16
    source_ip = ipaddress.ip_address(block[:size])
    destination_ip = ipaddress.ip_address(block[size : 2 * size])
    source_port = int.from_bytes(block[2 * size : 2 * size + 2], "big")
    destination_port = int.from_bytes(block[2 * size + 2 : 2 * size + 4], "big")
    # Bytes after the address block are TLVs, which popbox has no use for.
    return ProxyHeader(
        2, (str(source_ip), source_port), (str(destination_ip), destination_port), length
    )


def _v2_command(byte: int) -> int:
    version, command = byte >> 4, byte & 0x0F
    if version != _V2_VERSION:
        raise ProxyHeaderError(f"v2 header has version {version}, not 2")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"v2 command {command} is neither LOCAL nor PROXY")
    return command


# -- who may send a header --------------------------------------------------------------


class TrustedNetworks:
    """The networks whose connections must start with a PROXY header (CIDR list)."""

    def __init__(self, networks: Iterable[str]) -> None:
        """Raises ``ValueError`` for an entry that is not an address or a network."""
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False  # a UNIX socket path or some other non-IP peer
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        return any(address in network for network in self._networks)
