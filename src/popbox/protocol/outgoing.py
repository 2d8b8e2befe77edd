"""What a ``Pop3Connection`` has queued to send, and the log records that go with it.

Theory of operation: every octet the connection sends passes through one ``Outgoing``:
status lines (through the profile's ``on_wire``, so the Exchange profiles send no
response codes), serialised multi-line replies, SASL challenges and message bodies.  The
I/O layer drains it with ``take``.  Beside the octets it keeps two channels for the
protocol log, neither of which ever carries a message body or a listing line:

- ``records``: one ``CommandRecord`` (verb, ok) per answered command, closed by the
  command's status line; the verb is set by the connection when it parses the line.
- ``status_lines``: the status lines themselves, once ``keep_status_lines`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol.events import CommandRecord
from popbox.protocol.profiles import on_wire
from popbox.protocol.replies import TERMINATOR, Err, Ok, serialise

if TYPE_CHECKING:
    from popbox.protocol.profiles import WireProfile

__all__ = ["Outgoing"]


class Outgoing:
    """The output queue of one connection, with its protocol-log channels."""

    def __init__(self, wire: WireProfile) -> None:
        self._wire = wire
        self.chunks: list[bytes] = []
        self.queued = 0  # octets in ``chunks``: the connection paces on it
        self.records: list[CommandRecord] = []
        self.verb: str | None = None  # the command being answered, until its status line
        self._status_lines: list[bytes] | None = None  # kept once keep_status_lines is called

    def take(self) -> list[bytes]:
        """Take the queued output, as chunks to write in order."""
        out, self.chunks = self.chunks, []
        self.queued = 0
        return out

    def take_records(self) -> list[CommandRecord]:
        records, self.records = self.records, []
        return records

    def keep_status_lines(self) -> None:
        if self._status_lines is None:
            self._status_lines = []

    def take_status_lines(self) -> list[bytes]:
        if not self._status_lines:
            return []
        lines, self._status_lines = self._status_lines, []
        return lines

    def write(self, reply: Ok | Err) -> None:
        """A status line: closes the current command's record."""
        self.record(ok=isinstance(reply, Ok))
        self.status(serialise(on_wire(self._wire, reply)))

    def reply(self, reply: Ok | Err | bytes) -> None:
        """Write a status line, or a serialised multi-line reply."""
        if isinstance(reply, bytes):
            self.record(ok=True)
            self.queue(reply)
            if self._status_lines is not None:
                self._status_lines.append(reply[: reply.find(b"\n") + 1])
        else:
            self.write(reply)

    def status(self, line: bytes) -> None:
        """Queue a serialised status line (+OK/-ERR and its text)."""
        self.queue(line)
        if self._status_lines is not None:
            self._status_lines.append(line)

    def body(self, data: bytes) -> None:
        """Queue a message's wire form and the terminator, after its status line."""
        chunks = self.chunks
        chunks.append(data)
        if data and not data.endswith(b"\r\n"):
            chunks.append(b"\r\n")
        chunks.append(TERMINATOR)
        self.queued += len(data) + 5

    def queue(self, data: bytes) -> None:
        self.chunks.append(data)
        self.queued += len(data)

    def record(self, *, ok: bool) -> None:
        if self.verb is not None:
            self.records.append(CommandRecord(self.verb, ok))
            self.verb = None
