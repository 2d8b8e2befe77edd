"""A listener that starts an asyncio protocol on each connection: LMTP's, on TCP and unix.

Connections come from the shared ``AcceptLoop`` (``net/accept.py``).  A peer in
``server.trusted_proxies`` must send a PROXY header first (``net/proxied.py``), and the
protocol is then started on the socket with the client address the header carried (None:
the socket's peer).  Everything else (limits, TLS) is the POP3 acceptor's business.

It offers what the LMTP server uses of ``asyncio.Server``: ``sockets``, ``close()`` and
``wait_closed()``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from popbox.net.accept import AcceptFailures, AcceptLoop
from popbox.net.proxied import announced_client
from popbox.net.proxy import ProxyHeaderError, TrustedNetworks

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    import structlog

    from popbox.config import ServerConfig
    from popbox.net.bind import Address

__all__ = ["ProtocolListener"]

_CLOSE_TIMEOUT = 5.0  # seconds ``wait_closed`` gives connections still in their header


class ProtocolListener:
    """Accepts on ``sock``; ``protocol(client)`` makes the protocol for each connection."""

    def __init__(
        self,
        kind: str,
        sock: socket.socket,
        protocol: Callable[[Address | None], asyncio.BaseProtocol],
        *,
        proxies: ServerConfig,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._trusted = TrustedNetworks(proxies.trusted_proxies)
        self._timeout = proxies.proxy_header_timeout
        self._log = log
        self._accept = AcceptLoop(sock, self._start, failures=AcceptFailures(log, kind))
        self._accept.start()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def close(self) -> None:
        """Stop accepting; connections still sending their header are dropped."""
        self._accept.close()

    async def wait_closed(self) -> None:
        await self._accept.wait_closed()
        if self._accept.connections:
            await asyncio.wait(list(self._accept.connections), timeout=_CLOSE_TIMEOUT)

    async def _start(self, conn: socket.socket, peer: Any) -> None:
        host = peer[0] if isinstance(peer, tuple) else ""  # "" from a unix socket
        try:
            client = await announced_client(conn, host, self._trusted, self._timeout)
        except (ProxyHeaderError, TimeoutError, OSError) as exc:  # only from trusted peers
            self._log.info(
                "proxy_header_refused",
                proxy=f"{host}:{peer[1]}",
                error=str(exc) or type(exc).__name__,
            )
            conn.close()
            return
        except asyncio.CancelledError:
            conn.close()
            raise
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: self._protocol(client), conn
            )
        except OSError:
            conn.close()  # the client went away before its protocol started
        except asyncio.CancelledError:
            conn.close()
            raise
