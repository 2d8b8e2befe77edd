"""popbox's LDAP connection against a scripted server on a loopback port: replies
matched to requests by message ID, and every way the stream can break."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from popbox.directory.ldap_connection import (
    MAX_REPLY,
    Endpoint,
    LdapConnection,
    LdapConnectionError,
)
from popbox.ldapwire import ber, messages
from popbox.ldapwire.filters import compile_filter
from popbox.ldapwire.messages import Framer, Search

TIMEOUT = 5.0
Script = Callable[["Peer"], Awaitable[None]]


class Peer:
    """The server's side of the one connection: requests as the client sent them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._framer = Framer(MAX_REPLY)
        self._queued: list[bytes] = []

    async def request(self) -> tuple[int, int, bytes]:
        """The next request: its message ID, operation tag and the whole message."""
        while not self._queued:
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                raise EOFError
            self._queued.extend(self._framer.feed(chunk))
        raw = self._queued.pop(0)
        mid, op = ber.children(raw, ber.element(raw, 0, len(raw)))[:2]
        return ber.read_integer(raw, mid), op.tag, raw


def result(mid: int, op: int, code: int = 0, message: str = "") -> bytes:
    body = ber.enumerated(code) + ber.octets(b"") + ber.octets(message.encode())
    return ber.sequence(ber.integer(mid), ber.tlv(op, body))


def entry(mid: int, dn: str) -> bytes:
    body = ber.octets(dn.encode()) + ber.sequence()
    return ber.sequence(ber.integer(mid), ber.tlv(0x64, body))


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[LdapConnection, list[bytes]]]:
    """A connection to a server that runs ``script`` for its one client."""
    seen: list[bytes] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        peer = Peer(reader, writer)
        with contextlib.suppress(EOFError, ConnectionError, TimeoutError):
            await script(peer)
            while True:  # after the script, keep what the client still sends (its unbind)
                seen.append((await peer.request())[2])
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port, implicit_tls=False, starttls=False, connect_timeout=2)
    connection = await LdapConnection.open(endpoint, ssl.create_default_context())
    try:
        yield connection, seen
    finally:
        connection.close()
        server.close()
        await server.wait_closed()
        if handlers:  # the server's side sees the close and ends
            await asyncio.wait(handlers, timeout=TIMEOUT)


def search(base: str) -> Search:
    return Search(base, 2, compile_filter("(uid=a)"), ("1.1",), size_limit=2, time_limit=5)


async def test_replies_go_to_their_own_request_whatever_the_order():
    async def script(peer):
        first, _, _ = await peer.request()
        second, _, _ = await peer.request()
        peer.writer.write(entry(second, "uid=second") + result(second, 0x65))
        peer.writer.write(entry(first, "uid=first") + result(first, 0x65, 4))

    async with scripted(script) as (connection, _):
        one = asyncio.create_task(connection.search(search("dc=one")))
        two = asyncio.create_task(connection.search(search("dc=two")))
        (done_one, entries_one), (done_two, entries_two) = await asyncio.gather(one, two)
    assert [e.dn for e in entries_one] == ["uid=first"]
    assert done_one.code == 4
    assert [e.dn for e in entries_two] == ["uid=second"]
    assert done_two.code == 0


async def test_a_reply_cut_into_single_octets_is_read_whole():
    async def script(peer):
        mid, op, _ = await peer.request()
        assert op == 0x60
        for octet in result(mid, 0x61, 49, "data 52e"):
            peer.writer.write(bytes((octet,)))
            await peer.writer.drain()

    async with scripted(script) as (connection, _):
        answer = await asyncio.wait_for(connection.bind("cn=a", "pw"), TIMEOUT)
    assert (answer.code, answer.message) == (49, "data 52e")


async def test_a_notice_of_disconnection_fails_the_waiting_and_later_requests_s4_4_1():
    async def script(peer):
        await peer.request()
        name = ber.octets(messages.NOTICE_OF_DISCONNECTION.encode(), 0x8A)
        body = ber.enumerated(52) + ber.octets(b"") + ber.octets(b"going down") + name
        peer.writer.write(ber.sequence(ber.integer(0), ber.tlv(0x78, body)))

    async with scripted(script) as (connection, _):
        with pytest.raises(LdapConnectionError, match="ended the connection: going down"):
            await asyncio.wait_for(connection.bind("cn=a", "pw"), TIMEOUT)
        assert not connection.usable
        with pytest.raises(LdapConnectionError, match="going down"):
            await connection.bind("cn=a", "pw")


async def test_garbage_breaks_the_connection_with_a_reason():
    async def script(peer):
        await peer.request()
        peer.writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with scripted(script) as (connection, _):
        with pytest.raises(LdapConnectionError, match="not LDAP"):
            await asyncio.wait_for(connection.search(search("dc=x")), TIMEOUT)


async def test_a_reply_over_the_limit_is_refused_from_its_header():
    async def script(peer):
        await peer.request()
        peer.writer.write(b"\x30\x84" + (MAX_REPLY + 1).to_bytes(4, "big"))

    async with scripted(script) as (connection, _):
        with pytest.raises(LdapConnectionError, match="over the"):
            await asyncio.wait_for(connection.search(search("dc=x")), TIMEOUT)


async def test_a_server_that_closes_fails_the_request():
    async def script(peer):
        await peer.request()
        peer.writer.close()
        raise EOFError

    async with scripted(script) as (connection, _):
        with pytest.raises(LdapConnectionError, match="closed the connection"):
            await asyncio.wait_for(connection.bind("cn=a", "pw"), TIMEOUT)


async def test_a_refused_starttls_is_an_error_naming_the_result():
    async def script(peer):
        mid, op, _ = await peer.request()
        assert op == 0x77
        peer.writer.write(result(mid, 0x78, 2, "no TLS here"))

    async with scripted(script) as (connection, _):
        with pytest.raises(LdapConnectionError, match=r"StartTLS was refused: protocolError \(2\)"):
            await asyncio.wait_for(
                connection.start_tls(ssl.create_default_context(), "127.0.0.1"), TIMEOUT
            )


async def test_close_unbinds_s4_3():
    async def script(peer):
        mid, _, _ = await peer.request()
        peer.writer.write(result(mid, 0x61))

    async with scripted(script) as (connection, seen):
        await asyncio.wait_for(connection.bind("cn=a", "pw"), TIMEOUT)
        connection.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert seen
    assert seen[0][-2:] == b"\x42\x00"
