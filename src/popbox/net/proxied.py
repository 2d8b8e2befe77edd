"""PROXY headers on accepted sockets: reading exactly one, from the peers that must send it.

The header is peeked and then consumed to its exact length, so not one byte of what
follows (a POP3 or LMTP command, or a TLS ClientHello on the implicit-TLS port) is
lost: that is why a listener reads it on the bare socket before handing the socket to
asyncio (with ``ssl=`` for implicit TLS).  Parsing is ``net/proxy.py``'s, sans-IO.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from popbox.net.accept import readable
from popbox.net.proxy import V2_FIXED_LENGTH, ProxyHeader, parse_proxy_header

if TYPE_CHECKING:
    from popbox.net.bind import Address
    from popbox.net.proxy import TrustedNetworks

__all__ = ["announced_client", "read_proxy_header"]

_MAX_PEEK = V2_FIXED_LENGTH + 0xFFFF  # the longest header v2's length field can announce
_TRICKLE_PAUSE = 0.01  # seconds between peeks while a header arrives in pieces


async def announced_client(
    conn: socket.socket, peer_host: str, trusted: TrustedNetworks, header_timeout: float
) -> Address | None:
    """The client a trusted proxy's header announces; None for any other peer.

    None too when the header announces nobody (v2 LOCAL, v1 UNKNOWN: the proxy's own
    health check): the peer is then the client.  Raises ``ProxyHeaderError`` for a
    malformed header, ``TimeoutError`` past ``header_timeout`` seconds
    (``server.proxy_header_timeout``) and ``ConnectionError`` when the peer closes first.
    """
    if peer_host not in trusted:
        return None
    async with asyncio.timeout(header_timeout):
        return (await read_proxy_header(conn)).source


async def read_proxy_header(sock: socket.socket) -> ProxyHeader:
    """Read exactly one PROXY header from the start of ``sock``, and nothing more.

    Raises ``ProxyHeaderError`` for a malformed header and ``ConnectionError`` when the
    peer closes first; the caller bounds the wait (``asyncio.timeout``).
    """
    loop = asyncio.get_running_loop()
    seen = -1
    while True:
        await readable(loop, sock)
        try:
            data = sock.recv(_MAX_PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data:
            raise ConnectionError("peer closed before sending its PROXY header")
        header = parse_proxy_header(data)
        if header is not None:
            _consume(sock, header.length)
            return header
        if len(data) == seen:  # nothing new: a peeked socket stays readable, so pause
            await asyncio.sleep(_TRICKLE_PAUSE)
        seen = len(data)


def _consume(sock: socket.socket, length: int) -> None:
    # The bytes were peeked, so they are in the socket buffer and recv does not block.
    while length > 0:
        chunk = sock.recv(length)
        if not chunk:
            raise ConnectionError("peer closed inside its PROXY header")
        length -= len(chunk)
