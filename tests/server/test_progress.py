"""OutputWatch: how the inactivity timer (V0002) tells a slow reader from a gone one."""

from __future__ import annotations

import socket

from popbox.server.progress import Output, OutputWatch, unsent_octets


class FakeTransport:
    """What the watch reads of a transport: its buffer, and no socket."""

    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: object = None) -> object:  # noqa: ARG002
        return default


def test_nothing_owed_is_idle():
    watch, transport = OutputWatch(), FakeTransport()
    assert watch.look(transport, 100) is Output.IDLE
    assert watch.look(transport, 100) is Output.IDLE


def test_owed_output_that_moves_keeps_the_session_and_output_that_does_not_is_stuck():
    watch, transport = OutputWatch(), FakeTransport()
    transport.buffered = 5000
    assert watch.look(transport, 9000) is Output.MOVING  # the first look gives a chance
    transport.buffered = 3000
    assert watch.look(transport, 9000) is Output.MOVING  # the client took 2000 octets
    assert watch.look(transport, 9000) is Output.STUCK  # and then nothing


def test_taking_the_last_octets_counts_as_activity_once():
    watch, transport = OutputWatch(), FakeTransport()
    transport.buffered = 10
    watch.look(transport, 500)
    transport.buffered = 0
    assert watch.look(transport, 500) is Output.MOVING  # it read them since the last look
    assert watch.look(transport, 500) is Output.IDLE  # and has been silent a whole period


def test_unsent_octets_include_the_kernel_send_queue():
    """SIOCOUTQ: a peer that reads nothing leaves the server's octets in its kernel."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname(), timeout=5) as client,
    ):
        server, _ = listener.accept()
        with server:
            server.setblocking(False)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sent = 0
            for _ in range(1000):  # bounded: the buffers fill within a few hundred
                try:
                    sent += server.send(b"x" * 65536)
                except BlockingIOError:
                    break

            class Wrapped(FakeTransport):
                def get_extra_info(self, name: str, default: object = None) -> object:
                    return server if name == "socket" else default

            queued = unsent_octets(Wrapped())
            # What the peer's receive buffer holds has left the send queue; the
            # rest is still there, and that is what the watch must see.
            assert 0 < queued <= sent
            client.recv(65536)
            assert unsent_octets(Wrapped()) <= queued
