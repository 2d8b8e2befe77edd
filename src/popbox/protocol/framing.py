"""Line framing for POP3 commands and SASL responses.

Theory of operation: bytes arrive in arbitrary pieces; ``LineBuffer`` hands back whole
lines.  A line ends at LF; a CR just before the LF is dropped, so CRLF and a bare LF are
both accepted (some devices send bare LF).  The caller passes the length limit with each
request, because it depends on the state: commands are capped by ``max_command_size``
(2.1.2, E0006), SASL responses by a far larger cap (RFC 5034 section 4).  An AUTH command
line may be given that larger cap too (``auth_limit``): its initial response is a SASL
response riding on the command, and those can be long (an OAuth token or a Kerberos
ticket exceeds 1024 octets).

A line longer than the limit is reported once, as soon as the limit is crossed, and the
rest of it is discarded as it arrives, so the buffer never holds more than the limit and
a client that never sends LF cannot make the server hold more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LineBuffer", "LineTooLong"]

CR = 0x0D
_AUTH_LINE = re.compile(rb"AUTH[ \t]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line exceeded the limit; it is being discarded up to its LF."""

    limit: int


class LineBuffer:
    """Accumulates received bytes and splits them into lines without their CRLF."""

    __slots__ = ("_buffer", "_discarding", "_scanned")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # how much of the buffer is known to hold no LF
        self._discarding = False  # inside an over-long line, dropping bytes until LF

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    @property
    def size(self) -> int:
        """Octets held (at most the current line limit while no LF has come)."""
        return len(self._buffer)

    def clear(self) -> None:
        """Drop everything buffered, e.g. plaintext pipelined after STLS (RFC 2595 s4)."""
        self._buffer.clear()
        self._scanned = 0
        self._discarding = False

    def next_line(self, limit: int, *, auth_limit: int | None = None) -> bytes | LineTooLong | None:
        """The next complete line (without line end), ``LineTooLong``, or None for more data.

        ``limit`` counts the line's octets including CRLF; a bare LF counts as two, so
        the same line is accepted or refused whichever line end the client uses.  A line
        that starts with "AUTH" and a separator is capped by ``auth_limit`` instead, when
        given (the first five octets decide, and any limit is at least that long).
        """
        while True:
            cap = limit
            if auth_limit is not None and _AUTH_LINE.match(self._buffer):
                cap = max(limit, auth_limit)
            max_content = cap - 2
            newline = self._buffer.find(b"\n", self._scanned)
            if newline < 0:
                if self._discarding:
                    self._buffer.clear()
                    self._scanned = 0
                    return None
                pending = len(self._buffer) - self._buffer.endswith(b"\r")
                if pending > max_content:
                    self._buffer.clear()
                    self._scanned = 0
                    self._discarding = True
                    return LineTooLong(cap)
                self._scanned = len(self._buffer)
                return None
            end = newline - 1 if newline and self._buffer[newline - 1] == CR else newline
            line = bytes(self._buffer[:end])
            del self._buffer[: newline + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False  # the tail of a line already reported
                continue
            if len(line) > max_content:
                return LineTooLong(cap)
            return line
