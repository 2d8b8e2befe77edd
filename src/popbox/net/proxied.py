"""A listener that reads a PROXY header from trusted peers, for protocols other than POP3.

The LMTP listener uses it when ``server.trusted_proxies`` is set: the connection is
accepted here, a peer in those networks must send a PROXY header first (read to its
exact length, ``server/accept.py``), and the protocol is then started on the socket with
the client address the header carried (None: keep the socket's peer).  Everything else
(limits, TLS) is the POP3 acceptor's business, not this one's.

It offers what the LMTP server uses of ``asyncio.Server``: ``sockets``, ``close()`` and
``wait_closed()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from popbox.net.proxy import ProxyHeaderError, TrustedNetworks
from popbox.server.accept import read_proxy_header

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable

    import structlog

__all__ = ["ProxiedListener"]

Address = tuple[str, int]


class ProxiedListener:
    """Accepts on ``sock``; ``protocol(client)`` makes the protocol for each connection."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: Callable[[Address | None], asyncio.BaseProtocol],
        *,
        trusted: Iterable[str],
        header_timeout: float,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._trusted = TrustedNetworks(trusted)
        self._timeout = header_timeout
        self._log = log
        self._pending: set[asyncio.Task[None]] = set()
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def close(self) -> None:
        """Stop accepting; connections still sending their header are dropped."""
        self._task.cancel()
        for task in list(self._pending):
            task.cancel()
        self._sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                self._log.warning("accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._start(conn, (address[0], address[1])))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _start(self, conn: socket.socket, peer: Address) -> None:
        client: Address | None = None
        try:
            if peer[0] in self._trusted:
                async with asyncio.timeout(self._timeout):
                    client = (await read_proxy_header(conn)).source
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: self._protocol(client), conn
            )
        except (ProxyHeaderError, TimeoutError, OSError) as exc:
            self._log.info(
                "proxy_header_refused",
                proxy=f"{peer[0]}:{peer[1]}",
                error=str(exc) or type(exc).__name__,
            )
            conn.close()
        except asyncio.CancelledError:
            conn.close()
            raise
