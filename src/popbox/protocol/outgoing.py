"""What a ``Pop3Connection`` has queued to send, and the log records that go with it.

Theory of operation: every octet the connection sends passes through one ``Outgoing``:
status lines (through the profile's ``on_wire``, so the Exchange profiles send no
response codes), serialised multi-line replies, SASL challenges and message bodies.  The
I/O layer drains it with ``take``.  Beside the octets it keeps two channels for the
protocol log, neither of which ever carries a message body or a listing line:

- ``records``: one ``CommandRecord`` (verb, ok) per answered command, closed by the
  command's status line; the verb is set by the connection when it parses the line.
- ``status_lines``: the status lines themselves, once ``keep_status_lines`` is called.
- ``transcript``: once ``keep_transcript`` is called, every client line (redacted by the
  connection: no password, no SASL response) and every status line, in the order they
  were read and written: the Exchange-style protocol log's channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol import commands as c
from popbox.protocol.events import CommandRecord
from popbox.protocol.profiles import on_wire
from popbox.protocol.replies import TERMINATOR, Err, Ok, serialise

if TYPE_CHECKING:
    from popbox.protocol.profiles import WireProfile

__all__ = ["SASL_RESPONSE", "Outgoing", "redacted"]

SASL_RESPONSE = b"****"  # what the protocol log shows of a SASL continuation line


class Outgoing:
    """The output queue of one connection, with its protocol-log channels."""

    def __init__(self, wire: WireProfile) -> None:
        self._wire = wire
        self.chunks: list[bytes] = []
        self.queued = 0  # octets in ``chunks``: the connection paces on it
        self.records: list[CommandRecord] = []
        self.verb: str | None = None  # the command being answered, until its status line
        self._status_lines: list[bytes] | None = None  # kept once keep_status_lines is called
        # ("<", client line) and (">", status line), once keep_transcript is called.
        self._transcript: list[tuple[str, bytes]] | None = None

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

    def keep_transcript(self) -> None:
        """Keep the transcript from now on, starting with the status lines still queued
        (the greeting, written before anyone could ask)."""
        if self._transcript is None:
            self._transcript = [(">", chunk) for chunk in self.chunks]

    @property
    def transcribing(self) -> bool:
        return self._transcript is not None

    def take_transcript(self) -> list[tuple[str, bytes]]:
        if not self._transcript:
            return []
        lines, self._transcript = self._transcript, []
        return lines

    def client_line(self, line: bytes) -> None:
        """A line the client sent, as the connection redacted it (only while transcribing)."""
        if self._transcript is not None:
            self._transcript.append(("<", line))

    def write(self, reply: Ok | Err) -> None:
        """A status line: closes the current command's record."""
        self.record(ok=isinstance(reply, Ok))
        self.status(serialise(on_wire(self._wire, reply)))

    def reply(self, reply: Ok | Err | bytes) -> None:
        """Write a status line, or a serialised multi-line reply."""
        if isinstance(reply, bytes):
            self.record(ok=True)
            self.queue(reply)
            self._logged(reply[: reply.find(b"\n") + 1])
        else:
            self.write(reply)

    def status(self, line: bytes) -> None:
        """Queue a serialised status line (+OK/-ERR and its text)."""
        self.queue(line)
        self._logged(line)

    def _logged(self, line: bytes) -> None:
        if self._status_lines is not None:
            self._status_lines.append(line)
        if self._transcript is not None:
            self._transcript.append((">", line))

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


def redacted(line: bytes, command: c.Command | c.ParseError) -> bytes:
    """A client's command line as the protocol log may show it.

    PASS keeps its keyword only, AUTH its mechanism: the password and the initial
    response never reach a log.  A line that is no command keeps its keyword only, as
    it may be a password or a SASL response sent at the wrong time.
    """
    if isinstance(command, c.Pass):
        return b"PASS ****"
    if isinstance(command, c.Auth) and command.initial_response is not None:
        return b"AUTH " + (command.mechanism or "").encode("ascii") + b" ****"
    if isinstance(command, c.ParseError):
        verb = c.verb_of(line).encode("ascii")
        return verb + b" ****" if len(line) > len(verb) else verb
    return line
