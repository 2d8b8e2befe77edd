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

A full disk must not kill a process that touches the map: a page of a sparse file gets
its block on first touch, and when none is left the kernel raises SIGBUS (on tmpfs
even reading does).  So the file's blocks are allocated when it is opened
(``posix_fallocate``), before it is mapped.  When that cannot be done (no space, a
quota, a read-only filesystem) the beacon is *unavailable*: the store serves without
read-ahead, and tries again at each read-ahead and each removal, so read-ahead resumes
once space returns.  A process without the map cannot bump the counters, but then no
process has copies to make stale: the map is used only once the file's blocks are all
allocated, which lasts, so every process is then either unable to map it (no copies)
or maps it after the removal's retry failed (its copies are read after that commit).
"""

from __future__ import annotations

import errno
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
# Why blocks may be unobtainable for a while: the store then serves without read-ahead.
_PASSING = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def beacon_path(database: Path) -> Path:
    """The counters' file of the SQLite file ``database`` (beside its -wal and -shm)."""
    return database.with_name(database.name + "-changes")


class ChangeBeacon:
    """Per-mailbox removal counters in a file shared by every process on one database."""

    def __init__(self, path: Path, *, like: Path) -> None:
        """Open (or create, with the owner and mode of the database ``like``) ``path``.

        Raises ``OSError`` if the file cannot be opened for a reason other than a full
        disk or a read-only filesystem (those leave the beacon unavailable).
        """
        self._path = path
        self._like = like
        # Aligned 8-byte loads and stores: another process never sees half a counter.
        # The map lives as long as a ReadAhead refers to it (it is never closed
        # explicitly, so a copy outliving its store is still checked, never an error).
        self._counters: memoryview | None = None
        self._lock_fd: int | None = None  # opened at the first bump: see _exclusive
        self._thread_lock = threading.Lock()
        self._map_counters()

    def available(self) -> bool:
        """True when the counters are mapped; if not yet, tries to map them first."""
        if self._counters is None:
            try:
                self._map_counters()
            except OSError:
                return False  # changed since the store opened: still no read-ahead
        return self._counters is not None

    def _map_counters(self) -> None:
        model = self._like.stat()
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, model.st_mode & 0o666)
        except OSError as exc:
            if exc.errno in _PASSING:
                return
            raise
        try:
            info = os.fstat(fd)
            # As SQLite does for its -wal and -shm files: a root process (the CLI run by
            # an administrator) must not leave a file the server's user cannot open.
            if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (model.st_uid, model.st_gid):
                os.fchown(fd, model.st_uid, model.st_gid)
            # Sizes the file (zero-filled) with real blocks: nothing for a store through
            # the map to allocate later.  Already allocated (another process did it, or
            # an earlier run): nothing to do, and no space needed.
            os.posix_fallocate(fd, 0, _SIZE)
            self._counters = memoryview(mmap.mmap(fd, _SIZE)).cast("Q")
        except OSError as exc:
            if exc.errno not in _PASSING:
                raise
        finally:
            os.close(fd)

    @staticmethod
    def slot_of(name: str) -> int:
        return zlib.crc32(name.encode("utf-8")) % SLOTS

    def value(self, slot: int) -> int:
        """The slot's counter; only for a beacon that was ``available()``."""
        counters = self._counters
        assert counters is not None, "read-ahead without the counters"
        return int(counters[slot])

    def bump(self, name: str) -> None:
        """Mark every copy of ``name``'s bodies read before now as stale.

        Atomic against every other bump of the file, in this process or another.
        """
        if not self.available():
            return  # no process has copies to mark: see the module's docstring
        counters = self._counters
        assert counters is not None
        slot = self.slot_of(name)
        with self._thread_lock:
            fd = self._exclusive()
            try:
                counters[slot] = (counters[slot] + 1) & _WRAP
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
