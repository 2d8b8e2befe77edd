"""STLS command injection (RFC 2595 s4; the CVE-2011-0411 family of bugs).

Plaintext a man in the middle appends after "STLS" must never be executed as if it had
arrived over TLS, and nothing learnt before the handshake survives it.  Bytes the client
really sent over TLS, even in the same segment as its last handshake message, must be
kept.
"""

from __future__ import annotations

import socket
import ssl

from pop3_clients import MESSAGES, TIMEOUT, RawClient, assert_mailbox
from popbox_servers import USERS

OK_BEGIN_TLS = b"+OK begin TLS negotiation\r\n"
ERR_PASS_WITHOUT_USER = b"-ERR PASS must follow a successful USER\r\n"


def test_plaintext_pipelined_after_stls_is_not_executed_rfc2595_s4(pop3_server):
    """RFC 2595 s4: commands injected behind STLS in the same segment are discarded."""
    delivered = pop3_server.deliver("alice", *MESSAGES[:2])
    with RawClient.connect(pop3_server.host, pop3_server.port) as raw:
        raw.line()
        raw.send(b"STLS\r\nUSER alice\r\nCAPA\r\n")  # one segment: what an attacker injects
        assert raw.line() == OK_BEGIN_TLS
        raw.start_tls(pop3_server.tls.client_context())
        # Had the injected USER survived, this PASS would log the attacker's victim in.
        raw.send(f"PASS {USERS['alice']}\r\nNOOP\r\n".encode())
        assert raw.line() == ERR_PASS_WITHOUT_USER
        assert raw.line().startswith(b"-ERR NOOP is not allowed before login")  # no CAPA reply
        raw.send(b"QUIT\r\n")
        assert raw.read_to_eof() == b"+OK signing off\r\n"
    assert_mailbox(pop3_server, "alice", delivered)


def test_state_from_before_stls_is_forgotten_rfc2595_s4(start_pop3_server):
    """RFC 2595 s4: the server discards knowledge obtained from the client before TLS."""
    server = start_pop3_server({"login_type": "plaintext_login"})
    with RawClient.connect(server.host, server.port) as raw:
        raw.line()
        raw.send(b"USER alice\r\n")
        assert raw.line() == b"+OK send PASS\r\n"
        raw.send(b"STLS\r\n")
        assert raw.line() == OK_BEGIN_TLS
        raw.start_tls(server.tls.client_context())
        raw.send(f"PASS {USERS['alice']}\r\n".encode())
        assert raw.line() == ERR_PASS_WITHOUT_USER


def test_plaintext_sent_after_the_stls_reply_breaks_the_handshake_cleanly(pop3_server):
    """Plaintext between the STLS reply and the ClientHello is never run as a command."""
    delivered = pop3_server.deliver("alice", MESSAGES[0])
    with RawClient.connect(pop3_server.host, pop3_server.port) as raw:
        raw.line()
        raw.send(b"STLS\r\n")
        assert raw.line() == OK_BEGIN_TLS
        raw.send(b"USER alice\r\n")
        try:
            raw.start_tls(pop3_server.tls.client_context())
        except (ssl.SSLError, OSError):
            pass  # the injected bytes were taken for a broken ClientHello: a clean refusal
        else:  # they were dropped before the handshake: then they must not count either
            raw.send(f"PASS {USERS['alice']}\r\n".encode())
            assert raw.line() == ERR_PASS_WITHOUT_USER
    assert_mailbox(pop3_server, "alice", delivered)


class _BioClient:
    """A TLS client over memory BIOs, so the test decides which bytes share a segment."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self._plain = b""

    def handshake_and_send(self, first: bytes) -> None:
        """Finish the handshake and send ``first`` in the same segment as the last flight."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                assert data, "the server closed during the handshake"
                self.incoming.write(data)
        self.tls.write(first)
        self.sock.sendall(self.outgoing.read())

    def line(self) -> bytes:
        while b"\r\n" not in self._plain:
            try:
                self._plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                assert data, "the server closed the connection"
                self.incoming.write(data)
        line, _, self._plain = self._plain.partition(b"\r\n")
        return line + b"\r\n"


def test_command_sent_with_the_last_handshake_flight_is_answered(pop3_server):
    """Bytes that arrive over TLS together with the client's Finished are kept (curl does it)."""
    with socket.create_connection((pop3_server.host, pop3_server.port), timeout=TIMEOUT) as sock:
        raw = RawClient(sock)
        raw.line()
        raw.send(b"STLS\r\n")
        assert raw.line() == OK_BEGIN_TLS
        client = _BioClient(sock, pop3_server.tls.client_context())
        client.handshake_and_send(b"CAPA\r\n")
        assert client.line() == b"+OK capability list follows\r\n"
