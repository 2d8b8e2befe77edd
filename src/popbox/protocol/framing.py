"""Line framing for POP3 commands and SASL responses.

Theory of operation: bytes arrive in arbitrary pieces; ``LineBuffer`` hands back whole
lines.  A line ends at LF; a CR just before the LF is dropped, so CRLF and a bare LF are
both accepted (some devices send bare LF).  The caller passes the length limit with each
request, because it depends on the state: commands are capped by ``max_command_size``
(2.1.2, E0006), SASL responses by a far larger cap (RFC 5034 section 4).

A line longer than the limit is reported once, as soon as the limit is crossed, and the
rest of it is discarded as it arrives, so the buffer never holds more than the limit and
a client that never sends LF cannot make the server hold more.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LineBuffer", "LineTooLong"]

CR = 0x0D


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

    def clear(self) -> None:
        """Drop everything buffered, e.g. plaintext pipelined after STLS (RFC 2595 s4)."""
        self._buffer.clear()
        self._scanned = 0
        self._discarding = False

    def next_line(self, limit: int) -> bytes | LineTooLong | None:
        """The next complete line (without line end), ``LineTooLong``, or None for more data.

        ``limit`` counts the line's octets including CRLF; a bare LF counts as two, so
        the same line is accepted or refused whichever line end the client uses.
        """
        max_content = limit - 2
        while True:
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
                    return LineTooLong(limit)
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
                return LineTooLong(limit)
            return line
