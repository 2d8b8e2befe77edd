"""One connection to an LDAP server, on the event loop.

Theory of operation: ``LdapConnection`` is the connection's asyncio protocol.  A request
is written at once with the next message ID and its caller awaits a future; replies are
cut from the stream (``ldapwire.messages.Framer``) and handed to the request they name:
search entries are collected, and the operation's result ends the wait.  Several
requests may be in flight at once (RFC 4511 section 4.1.1.1), except around a bind,
which the caller must not overlap with anything else on the connection (section 4.2.1).
When the connection breaks (closed, reset, TLS error, octets that are not LDAP, the
server's notice of disconnection), every request still waiting fails with
``LdapConnectionError`` naming why, and so does every later one.  Timeouts belong to
the caller: a request abandoned by its caller leaves the connection in an unknown
state, and the caller closes it (``ldap_pool.py`` does).

ldaps:// connections are TLS from the start; StartTLS (section 4.14) upgrades a plain
connection in place with the same ``ssl.SSLContext`` and host name, so both check the
certificate the way every other TLS client in popbox does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from popbox.ldapwire import messages
from popbox.ldapwire.ber import BerError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from popbox.ldapwire.messages import Reply, Result, Search

__all__ = ["MAX_REPLY", "Endpoint", "LdapConnection", "LdapConnectionError", "LdapError"]

# popbox asks for at most two entries of at most three attributes: a reply this big is
# not one of its answers, and reading on would let a broken server fill memory.
MAX_REPLY = 1 << 20  # octets
_MAX_MESSAGE_ID = 2**31 - 1  # MessageID ::= INTEGER (0 .. maxInt)


class LdapError(Exception):
    """The directory server could not give an answer popbox can act on."""


class LdapConnectionError(LdapError):
    """The connection is broken; the message says how."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    implicit_tls: bool  # ldaps://
    starttls: bool  # upgrade a plain connection before anything else
    connect_timeout: float  # seconds for each step of opening


@dataclass(slots=True)
class _Pending:
    done: asyncio.Future[Result]
    entries: list[Reply] = field(default_factory=list)


class LdapConnection(asyncio.Protocol):
    """See the module docstring; made by ``open``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._framer = messages.Framer(MAX_REPLY)
        self._pending: dict[int, _Pending] = {}
        self._last_id = 0
        self._broken: LdapConnectionError | None = None

    @classmethod
    async def open(cls, endpoint: Endpoint, context: ssl.SSLContext) -> LdapConnection:
        """Connect (and upgrade with StartTLS when asked), each step within the
        endpoint's ``connect_timeout``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(endpoint.connect_timeout):
            _, connection = await loop.create_connection(
                cls,
                endpoint.host,
                endpoint.port,
                ssl=context if endpoint.implicit_tls else None,
                server_hostname=endpoint.host if endpoint.implicit_tls else None,
            )
        try:
            if endpoint.starttls:
                async with asyncio.timeout(endpoint.connect_timeout):
                    await connection.start_tls(context, endpoint.host)
        except BaseException:
            connection.close()
            raise
        return connection

    async def bind(self, dn: str, password: str) -> Result:
        result, _ = await self._request(lambda mid: messages.bind_request(mid, dn, password))
        return result

    async def search(self, search: Search) -> tuple[Result, list[Reply]]:
        """The search's result and its entries (references are not kept)."""
        return await self._request(lambda mid: messages.search_request(mid, search))

    async def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        """StartTLS (RFC 4511 section 4.14) on a connection that is not yet TLS."""
        result, _ = await self._request(messages.start_tls_request)
        if result.code != 0:
            raise LdapConnectionError(f"StartTLS was refused: {messages.describe(result)}")
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        upgraded = await loop.start_tls(self._transport, self, context, server_hostname=host)
        if upgraded is None:  # only when the connection closed during the handshake
            raise self._broken or LdapConnectionError("the server closed during StartTLS")
        self._transport = upgraded

    def close(self) -> None:
        """Unbind (RFC 4511 section 4.3: no reply) and close; safe in any state.

        The socket is aborted rather than closed: a TLS close waits for the server's
        close_notify (up to 30 s), and after an unbind there is nothing left to say.
        The unbind itself is handed to the socket at once by the write.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._broken is None:
            with contextlib.suppress(Exception):  # the server may be gone already
                transport.write(messages.unbind_request(self._next_id()))
        self._break(LdapConnectionError("the connection was closed"))
        transport.abort()

    @property
    def usable(self) -> bool:
        return self._broken is None

    async def _request(self, encode: Callable[[int], bytes]) -> tuple[Result, list[Reply]]:
        if self._broken is not None:
            raise self._broken
        assert self._transport is not None
        message_id = self._next_id()
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[message_id] = pending
        try:
            self._transport.write(encode(message_id))
            result = await pending.done
        finally:
            del self._pending[message_id]
        return result, pending.entries

    def _next_id(self) -> int:
        self._last_id = self._last_id % _MAX_MESSAGE_ID + 1
        return self._last_id

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport: uvloop's are its own.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        try:
            for raw in self._framer.feed(data):
                self._dispatch(messages.decode(raw))
        except BerError as exc:
            self._break(LdapConnectionError(f"the server's reply is not LDAP: {exc}"))
            if self._transport is not None:
                self._transport.abort()

    def eof_received(self) -> bool | None:
        self._break(LdapConnectionError("the server closed the connection"))
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        reason = _describe(exc) if exc else "the server closed the connection"
        self._break(LdapConnectionError(reason))

    def _dispatch(self, reply: Reply) -> None:
        if reply.message_id == 0:
            # Section 4.4: an unsolicited notification; the one defined (notice of
            # disconnection) and any other mean the server is done with us.
            said = reply.result.message if reply.result else ""
            self._break(LdapConnectionError(f"the server ended the connection: {said}"))
            if self._transport is not None:
                self._transport.abort()
            return
        pending = self._pending.get(reply.message_id)
        if pending is None or pending.done.done():
            return  # the caller gave up on it, and will close this connection
        if reply.result is not None:
            pending.done.set_result(reply.result)
        elif reply.op == messages.SEARCH_ENTRY:
            pending.entries.append(reply)

    def _break(self, error: LdapConnectionError) -> None:
        if self._broken is not None:
            return
        self._broken = error
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.set_exception(error)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
