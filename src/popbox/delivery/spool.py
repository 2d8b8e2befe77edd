"""Where one LMTP transaction keeps its DATA: in memory while small, else in a file.

Theory of operation: a ``DataSpool`` takes the payload as ``lmtp_protocol.DataReader``
hands it over (dot-transparency undone) and keeps it in memory up to ``threshold``
octets (``[lmtp] spool_threshold``); the first octet beyond moves everything to an
unnamed temporary file in the spool directory (``data_dir/lmtp-spool``), so a
transaction never holds more than the threshold in memory while the data arrives,
however large the message (up to ``max_message_size``).

The file has no name (``O_TMPFILE`` on Linux; elsewhere ``tempfile`` unlinks it at
once), so it disappears when it is closed or the process dies, kill -9 included;
``prepare_spool_dir`` removes anything a platform without unnamed files left behind
when the next server starts.  A write that fails (a full disk) does not end the
transaction: the rest of the data is read and dropped, and every recipient gets a
temporary failure, so the MTA keeps the message and retries.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SPOOL_DIR", "DataSpool", "prepare_spool_dir"]

SPOOL_DIR = "lmtp-spool"  # under data_dir
_FILE_BUFFER = 256 * 1024  # octets written to the file per system call


def prepare_spool_dir(directory: Path) -> None:
    """Create the spool directory (owner only) and remove what a dead process left in it.

    Removing is safe while other workers spool: their files have no name, and unlinking
    the name of a file someone holds open leaves their file as it is.
    """
    # A directory that cannot be made or cleaned (a read-only data_dir) must not stop the
    # server from starting: a spooled transaction then fails with 451, as any write would.
    with contextlib.suppress(OSError):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in directory.iterdir():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                leftover.unlink()


class DataSpool:
    """The DATA of one transaction (module docs); ``close`` it in every case."""

    def __init__(self, directory: Path, threshold: int) -> None:
        self._directory = directory
        self._threshold = threshold
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.failed: OSError | None = None  # the write error that lost the data, if any

    @property
    def spooled(self) -> bool:
        """Whether the data went to a file (and is read back off the event loop)."""
        return self._file is not None

    def write(self, chunk: bytes) -> None:
        """Keep ``chunk``; after a failed write, drop it (``failed`` says why)."""
        if self.failed is not None:
            return
        try:
            if self._file is None and len(self._memory) + len(chunk) <= self._threshold:
                self._memory += chunk
                return
            spool = self._file
            if spool is None:
                spool = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                    dir=self._directory, prefix="data-", buffering=_FILE_BUFFER
                )
                self._file = spool
                spool.write(self._memory)
                self._memory = bytearray()
            spool.write(chunk)
        except OSError as exc:
            self.failed = exc
            self.discard()

    def discard(self) -> None:
        """Drop what was kept (the message is too big, or a write failed)."""
        self._memory = bytearray()
        self.close()

    def content(self) -> bytes:
        """Everything written, as one value.  Blocking when ``spooled``: reads the file."""
        if self._file is None:
            return bytes(self._memory)
        size = self._file.tell()
        self._file.seek(0)  # flushes what is buffered
        # Asked for its exact size, a buffered file reads into the result directly;
        # read() to the end would grow a buffer and copy it once more.
        return self._file.read(size)

    def close(self) -> None:
        """Release the file (the kernel frees it: it has no name)."""
        spool, self._file = self._file, None
        if spool is not None:
            with contextlib.suppress(OSError):  # a flush on a full disk: the data is dropped
                spool.close()
