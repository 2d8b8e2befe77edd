"""Accepting POP3 connections: PROXY header, limits, TLS, then hand over to a session.

Theory of operation: listening sockets are bound by ``net/bind.py`` (in the supervisor
when there are several workers, which then all accept on the same sockets: see
``node/supervisor.py``), and each runs the shared accept loop (``net/accept.py``).  For
each connection an ``Acceptor``

1. reads the PROXY header first when the peer is in ``server.trusted_proxies``
   (``net/proxied.py``: to its exact length, so a TLS ClientHello on the implicit-TLS
   port is not lost: that is why the implicit-TLS listener does not hand its socket to
   asyncio with ``ssl=`` until the header is read);
2. asks the node's ``Limiter`` to admit the real client address, answering a refusal
   with one ``-ERR [SYS/TEMP]`` line (no code in the Exchange profiles; after the TLS
   handshake on the TLS port, or the client could not read it);
3. runs the TLS handshake for implicit TLS, and hands the socket to the session protocol
   with ``loop.connect_accepted_socket``.

Everything after that (logs, brute-force accounting, per-user limits) sees the address
the header carried.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from popbox.net.accept import AcceptFailures, AcceptLoop
from popbox.net.proxied import announced_client
from popbox.net.proxy import ProxyHeaderError, TrustedNetworks
from popbox.protocol.profiles import PROFILES, on_wire
from popbox.protocol.replies import serialise

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from popbox.net.bind import Address
    from popbox.server.context import ServerContext
    from popbox.server.limits import Refused
    from popbox.server.session import Pop3Protocol

__all__ = ["Acceptor"]


class _Refusal(asyncio.Protocol):
    """Says one line and closes: the answer to a connection over a limit."""

    def __init__(self, line: bytes) -> None:
        self._line = line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio's.
        cast("asyncio.WriteTransport", transport).write(self._line)
        transport.close()


class Acceptor:
    """The accept loop of one listening socket."""

    def __init__(
        self,
        context: ServerContext,
        kind: str,
        sock: socket.socket,
        new_session: Callable[[Address], Pop3Protocol],
    ) -> None:
        self._context = context
        self.kind = kind
        self._implicit_tls = kind == "pop3s"
        self._new_session = new_session
        self._accept = AcceptLoop(
            sock,
            self._handle,
            failures=AcceptFailures(context.log, kind),
            balance=context.balance,
        )
        self._trusted = TrustedNetworks(())
        self._trusted_from: tuple[str, ...] = ()

    def start(self) -> None:
        self._accept.start()

    async def stop_accepting(self) -> None:
        """Stop accepting and drop connections still in their PROXY header or handshake."""
        self._accept.close()
        await self._accept.wait_closed()

    @property
    def connections(self) -> set[asyncio.Task[None]]:
        """One task per connection, done when its session has ended."""
        return self._accept.connections

    def _trusted_proxies(self) -> TrustedNetworks:
        networks = self._context.config.server.trusted_proxies  # may change on reload
        if networks != self._trusted_from:
            self._trusted, self._trusted_from = TrustedNetworks(networks), networks
        return self._trusted

    async def _handle(self, conn: socket.socket, peer: Any) -> None:
        try:
            await self._admit(conn, (peer[0], peer[1]))
        except asyncio.CancelledError:
            conn.close()  # stopped before a session took the socket over
            raise

    async def _admit(self, conn: socket.socket, client: Address) -> None:
        context = self._context
        timeout = context.config.server.proxy_header_timeout
        try:
            announced = await announced_client(conn, client[0], self._trusted_proxies(), timeout)
        except (ProxyHeaderError, TimeoutError, OSError) as exc:
            context.log.info(
                "proxy_header_refused",
                listener=self.kind,
                proxy=f"{client[0]}:{client[1]}",
                error=str(exc) or type(exc).__name__,
            )
            context.metrics.refused.labels("proxy_header").inc()
            conn.close()
            return
        client = announced or client
        refused = await context.limits.admit(client[0])
        if refused is not None:
            await self._refuse(conn, client, refused)
            return
        try:
            await self._serve(conn, client)
        finally:
            context.limits.release(client[0])

    async def _serve(self, conn: socket.socket, client: Address) -> None:
        context = self._context
        loop = asyncio.get_running_loop()
        session = self._new_session(client)
        tls = context.tls.context if self._implicit_tls and context.tls is not None else None
        try:
            await loop.connect_accepted_socket(
                lambda: session,
                conn,
                ssl=tls,
                ssl_handshake_timeout=(
                    context.config.pop3.handshake_timeout if tls is not None else None
                ),
            )
        except (OSError, TimeoutError) as exc:
            context.log.info(
                "tls_handshake_failed", peer=f"{client[0]}:{client[1]}", error=type(exc).__name__
            )
            conn.close()
            return
        self._accept.handed_over()  # the session drains itself on stop from now on
        context.metrics.connections.labels(self.kind).inc()
        gauge = context.metrics.connections_open.labels(self.kind)
        gauge.inc()
        try:
            await session.wait_closed()
        finally:
            gauge.dec()

    async def _refuse(self, conn: socket.socket, client: Address, refused: Refused) -> None:
        context = self._context
        context.log.warning(
            "connection_refused",
            listener=self.kind,
            peer=f"{client[0]}:{client[1]}",
            limit=refused.limit,
        )
        context.metrics.refused.labels(refused.limit).inc()
        tls = context.tls.context if self._implicit_tls and context.tls is not None else None
        # As every reply of the profile: the Exchange profiles send no response code, as
        # Exchange lists no RESP-CODES in CAPA (MailKit#119, vmime#267; RFC 2449 s8), so
        # "[SYS/TEMP]" would be mere text to their clients.  No public capture shows
        # Exchange's own text for a refused connection: the reason stays popbox's.
        line = serialise(on_wire(PROFILES[context.config.compat], refused.reply))
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Refusal(line),
                conn,
                ssl=tls,
                ssl_handshake_timeout=(
                    context.config.pop3.handshake_timeout if tls is not None else None
                ),
            )
        except (OSError, TimeoutError):
            conn.close()
