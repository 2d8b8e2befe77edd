"""Which messages need UTF-8 mode (RFC 6856 s2.1, s4, s5).

"When UTF-8 mode has not been enabled, character strings outside the ASCII repertoire
MUST NOT be sent to the client as is.  If a client requests a UTF-8 message when UTF-8
mode is not enabled, the server MUST either send the client a surrogate message ... or
fail the request with an -ERR response" (s2.1).  popbox fails it, with the ``[UTF8]``
response code (s5), and builds no surrogate (RFC 6855 s7's downgrade would rewrite the
header, and the sizes LIST announced would no longer match what RETR sends).

A UTF-8 message is one whose header section holds non-ASCII text in UTF-8 (RFC 6532's
internationalized headers).  Two kinds of message are not, and are sent as they always
were: a body in 8bit content-transfer-encoding (RFC 6152), which clients have taken over
POP3 long before RFC 6856; and raw 8-bit header octets that are not UTF-8 (Latin-1 and
the like, from mailers that predate MIME header encoding), which UTF-8 mode would not
make readable either, so that ``[UTF8]`` ("the client MAY reissue the command after
entering UTF-8 mode", s5) would be untrue and the message unreachable for every client.
"""

from __future__ import annotations

__all__ = ["UTF8_REFUSED", "needs_utf8"]

UTF8_REFUSED = "has UTF-8 headers: send UTF8 before logging in to retrieve it"


def needs_utf8(wire_form: bytes) -> bool:
    """Whether the header section of a message (stored wire form) holds UTF-8 text
    beyond ASCII."""
    end = wire_form.find(b"\r\n\r\n")
    header = wire_form if end < 0 else wire_form[:end]
    if header.isascii():
        return False
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        return False  # legacy 8-bit octets, not an internationalized header
    return True
