"""A message's wire form while it is too large to hold in memory: a temporary file.

Theory of operation: a body arriving from the network (a RETR answer of ``popbox import
pop3``) goes into a ``WireSpool``, which keeps it in memory up to ``threshold`` octets
and moves it to an unnamed temporary file beyond that.  ``finish`` gives either the
octets (small messages: nothing changes for them) or a ``SpooledWire``, which a
``NewMessage`` carries in place of its octets.  The stores insert a ``SpooledWire``
piece by piece (``wire_pieces``): SQLite through its incremental blob API, PostgreSQL
through a large object, so memory holds one piece of it at a time, never the message.

The file has no name (``O_TMPFILE`` on Linux; elsewhere ``tempfile`` unlinks it at
once), so it disappears when it is closed or the process dies, kill -9 included.
Durability is the store's: the file is only a buffer, and the message is acknowledged
(counted as imported) when the transaction that inserted it commits.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["PIECE", "SpooledWire", "WireSpool", "wire_octets", "wire_pieces"]

PIECE = 1024 * 1024  # octets read, sent or written at a time
HEAD = 64 * 1024  # octets kept in memory from the start: the header section, usually
_FILE_BUFFER = 256 * 1024  # octets written to the file per system call


class SpooledWire:
    """Wire-form octets in a temporary file; ``close`` releases it (the store does not)."""

    def __init__(self, file: IO[bytes], length: int, head: bytes) -> None:
        self._file = file
        self._length = length
        self.head = head  # the first ``HEAD`` octets, for header fields and dates

    def __len__(self) -> int:
        return self._length

    def pieces(self, size: int = PIECE) -> Iterator[bytes]:
        """The octets from the start, at most ``size`` at a time (blocking file reads)."""
        self._file.seek(0)
        left = self._length
        while left > 0:
            piece = self._file.read(min(size, left))
            if not piece:
                raise OSError("the spooled message file is shorter than what was written")
            left -= len(piece)
            yield piece

    def read_all(self) -> bytes:
        """Every octet as one value: for a store that keeps messages in memory anyway."""
        self._file.seek(0)
        return self._file.read(self._length)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def wire_pieces(wire: bytes | SpooledWire, size: int = PIECE) -> Iterator[bytes | memoryview]:
    """``wire`` at most ``size`` octets at a time, without copying what is in memory."""
    if isinstance(wire, SpooledWire):
        yield from wire.pieces(size)
        return
    view = memoryview(wire)
    for start in range(0, len(view), size):
        yield view[start : start + size]


def wire_octets(wire: bytes | SpooledWire) -> bytes:
    """``wire`` as one value (reads a spooled one whole)."""
    return wire.read_all() if isinstance(wire, SpooledWire) else wire


class WireSpool:
    """Collects one body (module docs); ``finish`` once, or ``close`` to drop it."""

    def __init__(self, directory: Path | None, threshold: int = PIECE) -> None:
        self._directory = directory
        self._threshold = threshold
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._head = b""
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def write(self, chunk: bytes | memoryview) -> None:
        """Keep ``chunk``; raises ``OSError`` when the file cannot take it (a full disk)."""
        self._length += len(chunk)
        if self._file is None:
            self._memory += chunk
            if len(self._memory) <= self._threshold:
                return
            self._head = bytes(self._memory[:HEAD])
            self._file = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                dir=self._directory, prefix="import-", buffering=_FILE_BUFFER
            )
            self._file.write(self._memory)
            self._memory = bytearray()
            return
        self._file.write(chunk)

    def finish(self) -> bytes | SpooledWire:
        """What was written: the octets when small, else the file (its owner closes it)."""
        spool, self._file = self._file, None
        if spool is None:
            body, self._memory = bytes(self._memory), bytearray()
            return body
        spool.flush()
        return SpooledWire(spool, self._length, self._head)

    def close(self) -> None:
        """Drop what was written (the answer broke off, or it is not wanted)."""
        self._memory = bytearray()
        spool, self._file = self._file, None
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.close()
