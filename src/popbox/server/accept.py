"""Accepting connections: bind, PROXY header, limits, TLS, then hand over to a session.

Theory of operation: listening sockets are bound by ``bind_listeners`` (in the
supervisor when there are several workers, which then all accept on the same sockets:
see ``server/workers.py``).  An ``Acceptor`` runs one accept loop per socket.  For each
connection it

1. reads the PROXY header first when the peer is in ``server.trusted_proxies``.  The
   header is peeked and then consumed to its exact length, so not one byte of what
   follows (a POP3 command, or a TLS ClientHello on the implicit-TLS port) is lost: that
   is why the implicit-TLS listener does not hand its socket to asyncio with ``ssl=``
   until the header is read;
2. asks the node's ``Limiter`` to admit the real client address, answering a refusal
   with one ``-ERR [SYS/TEMP]`` line (after the TLS handshake on the TLS port, or the
   client could not read it);
3. runs the TLS handshake for implicit TLS, and hands the socket to the session protocol
   with ``loop.connect_accepted_socket``.

Everything after that (logs, brute-force accounting, per-user limits) sees the address
the header carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from pathlib import Path
from typing import TYPE_CHECKING, cast

from popbox.config import parse_address
from popbox.delivery.lmtp_server import bind_unix_listener
from popbox.net.balance import DEFER
from popbox.net.proxy import (
    V2_FIXED_LENGTH,
    ProxyHeader,
    ProxyHeaderError,
    TrustedNetworks,
    parse_proxy_header,
)
from popbox.protocol.replies import serialise

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.config import Config
    from popbox.server.context import ServerContext
    from popbox.server.limits import Refused
    from popbox.server.session import Pop3Protocol

__all__ = [
    "Acceptor",
    "Bound",
    "address_of",
    "bind_listeners",
    "bind_socket",
    "read_proxy_header",
]

Bound = tuple[str, socket.socket]  # ("pop3s", listening socket)
Address = tuple[str, int]
BACKLOG = 1024
HANDSHAKE_TIMEOUT = 30.0
ACCEPT_BATCH = 64  # connections taken from the queue per readiness event
_MAX_PEEK = V2_FIXED_LENGTH + 0xFFFF  # the longest header v2's length field can announce
_TRICKLE_PAUSE = 0.01  # seconds between peeks while a header arrives in pieces


def bind_socket(host: str, port: int) -> list[socket.socket]:
    """Listening, non-blocking TCP sockets for ``host:port`` (one per resolved address)."""
    sockets: list[socket.socket] = []
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
            # A port of 0 resolved on the first address is reused for the next ones.
            port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def address_of(sock: socket.socket) -> tuple[str, int]:
    """What a ``listening`` line shows: host (IPv6 in brackets) and the real port.

    A unix socket gives ``("unix:/path", -1)``.
    """
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}", -1
    host, port = sock.getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), port


def bind_listeners(config: Config, *, lmtp: bool = False) -> list[Bound]:
    """Bind every POP3 listener of the configuration (and with ``lmtp``, the LMTP ones)."""
    bound: list[Bound] = []
    try:
        for kind, key, addresses in (
            ("pop3", "pop3.listen", config.pop3.listen),
            ("pop3s", "pop3.tls_listen", config.pop3.tls_listen),
            ("lmtp", "lmtp.listen", config.lmtp.listen if lmtp else ()),
        ):
            for address in addresses:
                host, port = parse_address(address, key, allow_unix=kind == "lmtp")
                if port < 0:
                    bound.append((kind, bind_unix_listener(Path(host))))
                else:
                    bound.extend((kind, sock) for sock in bind_socket(host, port))
    except OSError:
        for _, sock in bound:
            sock.close()
        raise
    return bound


async def read_proxy_header(sock: socket.socket) -> ProxyHeader:
    """Read exactly one PROXY header from the start of ``sock``, and nothing more.

    Raises ``ProxyHeaderError`` for a malformed header and ``ConnectionError`` when the
    peer closes first; the caller bounds the wait (``asyncio.timeout``).
    """
    loop = asyncio.get_running_loop()
    seen = -1
    while True:
        await _readable(loop, sock)
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


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


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
        self._sock = sock
        self._implicit_tls = kind == "pop3s"
        self._new_session = new_session
        self._loop_task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._pending: set[asyncio.Task[None]] = set()  # not yet handed to a session
        self._trusted = TrustedNetworks(())
        self._trusted_from: tuple[str, ...] = ()

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop_accepting(self) -> None:
        """Stop accepting and drop connections still in their PROXY header or handshake."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._sock.close()
        for task in list(self._pending):
            task.cancel()

    @property
    def connections(self) -> set[asyncio.Task[None]]:
        """One task per connection, done when its session has ended."""
        return self._connections

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        balance = self._context.balance
        while True:
            await _readable(loop, self._sock)
            if balance is not None and balance.busier_than_another():
                # A worker holding fewer connections takes this one, unless it has not
                # within DEFER (busy, stuck or gone): see server/balance.py.
                await asyncio.sleep(DEFER)
            # Whatever is queued, as asyncio's own servers do: one accept per loop
            # iteration capped logins/s when many clients connect.
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, address = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    break  # none left, or another worker took it
                except ConnectionAbortedError:
                    continue  # reset by its client while queued: take the next one
                except OSError as exc:  # EMFILE and friends: back off instead of spinning
                    self._context.log.warning("accept_failed", listener=self.kind, error=str(exc))
                    await asyncio.sleep(0.1)
                    break
                conn.setblocking(False)  # noqa: FBT003 - socket's own API
                self._start(loop, conn, address)
                if balance is not None and balance.busier_than_another():
                    break  # the rest of the queue is for a less loaded worker

    def _start(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, address: Address
    ) -> None:
        task = loop.create_task(self._handle(conn, address))
        self._connections.add(task)
        self._pending.add(task)
        if (balance := self._context.balance) is not None:
            balance.opened()
            task.add_done_callback(lambda _: balance.closed())
        # Before _pending.discard: a task cancelled before its first step never runs
        # _handle's own cleanup, and its socket would be left to the garbage collector.
        task.add_done_callback(functools.partial(self._close_unserved, conn))
        task.add_done_callback(self._connections.discard)
        task.add_done_callback(self._pending.discard)

    def _close_unserved(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        if task.cancelled() and task in self._pending:
            conn.close()

    def _is_trusted(self, host: str) -> bool:
        networks = self._context.config.server.trusted_proxies  # may change on reload
        if networks != self._trusted_from:
            self._trusted, self._trusted_from = TrustedNetworks(networks), networks
        return host in self._trusted

    async def _handle(self, conn: socket.socket, address: Address) -> None:
        try:
            await self._admit(conn, (address[0], address[1]))
        except asyncio.CancelledError:
            conn.close()  # stopped before a session took the socket over
            raise

    async def _admit(self, conn: socket.socket, client: Address) -> None:
        context = self._context
        try:
            if self._is_trusted(client[0]):
                client = await self._proxied_client(conn, client)
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
        refused = await context.limits.admit(client[0])
        if refused is not None:
            await self._refuse(conn, client, refused)
            return
        try:
            await self._serve(conn, client)
        finally:
            context.limits.release(client[0])

    async def _proxied_client(self, conn: socket.socket, proxy: Address) -> Address:
        async with asyncio.timeout(self._context.config.server.proxy_header_timeout):
            header = await read_proxy_header(conn)
        return header.source if header.source is not None else proxy

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
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls is not None else None,
            )
        except (OSError, TimeoutError) as exc:
            context.log.info(
                "tls_handshake_failed", peer=f"{client[0]}:{client[1]}", error=type(exc).__name__
            )
            conn.close()
            return
        if (task := asyncio.current_task()) is not None:
            self._pending.discard(task)  # the session drains itself on stop from now on
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
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Refusal(serialise(refused.reply)),
                conn,
                ssl=tls,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls is not None else None,
            )
        except (OSError, TimeoutError):
            conn.close()
