"""Bodies read ahead of the RETRs that will ask for them, and how a copy knows it is stale.

Theory of operation: a client downloading its maildrop sends RETR 1, RETR 2, ... and
for small messages each RETR was one SQLite read transaction (a WAL read lock, its
release, one statement): the largest single share of the command cycle.  Once a
session asks for consecutive messages, its ``SqliteMaildrop`` reads the next few
bodies in one statement and answers the following RETRs from them.

C0004 forbids answering from a copy blindly: RETR of a message that another session
removed after the copy was read must get -ERR.  So every popbox process that removes
messages from the file (UPDATE, expiry, a deleted user: ``SqliteStore``'s writes) bumps
a counter for that mailbox, after its transaction commits, in a small memory-mapped
file beside the database that all of them share (``ChangeBeacon``).  A copy is used
only while its mailbox's counter still holds the value read *before* the copy was
read:

- a removal committed before that value was read is already missing from the copy
  (the copy's statement started later and sees the commit);
- a removal committed after it bumps the counter after committing, so the copy is
  dropped from then on and the RETR reads the store as before.

Checking a counter is a read of shared memory: no system call, no lock.  A bump is a
read-modify-write, so bumps from several processes are serialised by an ``flock`` on
the file (an increment lost to a race could bring a counter back to a value a reader
saw before a removal, and that reader would then use a stale copy); bumps happen once
per removing transaction, never on the read path.  Mailboxes
share the 4096 counters by a hash of their name; a collision only drops a copy that
was still good.  A process killed between its commit and its bump (a window of
microseconds) leaves other sessions' copies unmarked, so the counter is also bumped
before the transaction, which narrows that case to a copy read inside the window.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SLOTS", "ChangeBeacon", "ReadAhead", "beacon_path"]

SLOTS = 4096
_SIZE = SLOTS * 8  # one unsigned 64-bit counter per slot
_WRAP = (1 << 64) - 1


def beacon_path(database: Path) -> Path:
    """The counters' file of the SQLite file ``database`` (beside its -wal and -shm)."""
    return database.with_name(database.name + "-changes")


class ChangeBeacon:
    """Per-mailbox removal counters in a file shared by every process on one database."""

    def __init__(self, path: Path, *, like: Path) -> None:
        """Open (or create, with the owner and mode of the database ``like``) ``path``."""
        model = like.stat()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, model.st_mode & 0o666)
        try:
            info = os.fstat(fd)
            # As SQLite does for its -wal and -shm files: a root process (the CLI run by
            # an administrator) must not leave a file the server's user cannot open.
            if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (model.st_uid, model.st_gid):
                os.fchown(fd, model.st_uid, model.st_gid)
            if info.st_size < _SIZE:
                # Zero-filled, and a no-op for whoever loses a race to do the same.
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        # Aligned 8-byte loads and stores: another process never sees half a counter.
        # The map lives as long as a ReadAhead refers to it (it is never closed
        # explicitly, so a copy outliving its store is still checked, never an error).
        self._counters = memoryview(self._map).cast("Q")
        self._path = path
        self._lock_fd: int | None = None  # opened at the first bump: see _exclusive
        self._thread_lock = threading.Lock()

    @staticmethod
    def slot_of(name: str) -> int:
        return zlib.crc32(name.encode("utf-8")) % SLOTS

    def value(self, slot: int) -> int:
        return int(self._counters[slot])

    def bump(self, name: str) -> None:
        """Mark every copy of ``name``'s bodies read before now as stale.

        Atomic against every other bump of the file, in this process or another.
        """
        slot = self.slot_of(name)
        with self._thread_lock:
            fd = self._exclusive()
            try:
                self._counters[slot] = (self._counters[slot] + 1) & _WRAP
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock's descriptor (the map stays: copies may still check it)."""
        with self._thread_lock:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)

    def _exclusive(self) -> int:
        """Hold the file's exclusive ``flock``, on this beacon's own descriptor.

        ``flock`` rather than ``fcntl`` record locks: those belong to the process, so
        two beacons of one process would not exclude each other.  Opened lazily, so a
        process that only reads never needs write access to the file.
        """
        if self._lock_fd is None:
            self._lock_fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self._lock_fd


class ReadAhead:
    """Some bodies of one mailbox, by uid, good while no message has left the mailbox."""

    def __init__(
        self, beacon: ChangeBeacon, slot: int, seen: int, bodies: dict[int, bytes]
    ) -> None:
        self._beacon = beacon
        self._slot = slot
        self._seen = seen  # the slot's counter before the bodies were read
        self._bodies = bodies

    def take(self, uid: int) -> bytes | None:
        """``uid``'s body, handed out once; None: not read, or possibly stale: read it."""
        if self._beacon.value(self._slot) != self._seen:
            self._bodies.clear()
            return None
        return self._bodies.pop(uid, None)

    def __len__(self) -> int:
        return len(self._bodies)
