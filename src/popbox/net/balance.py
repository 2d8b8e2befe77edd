"""Spreading connections evenly over the workers that accept on the same sockets.

Theory of operation: every worker of a node accepts on the same listening sockets (see
``node/supervisor.py``), and the kernel wakes all of them for a new connection: whichever
calls accept() first takes it, and then everything else queued.  Nothing makes that
even: a worker can end up serving three connections while another serves one, and the
three wait for each other's replies on one core while the other core idles.  A process
per connection (Dovecot) never has that problem; an event loop per core must balance.

So each worker publishes how many connections it holds in a small shared memory block
the supervisor creates (one counter per worker), and a worker holding ``MARGIN`` or
more connections than another does not accept at once: it lets the others take the
connection, and takes it itself only if it is still waiting ``DEFER`` seconds later (the
others may be busy, gone or stuck).  A connection therefore waits at most ``DEFER``
longer, and never for a worker that cannot take it.  Counters are written only by their
own worker, as whole aligned 64-bit words, so no lock is needed.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["DEFER", "AcceptBalance", "create_counters"]

DEFER = 0.002  # seconds a busier worker leaves a new connection to the others
# How many more connections than another worker make one "busier".  One is normal
# churn under many short sessions (a login burst), where deferring costs logins/s.
MARGIN = 2


def create_counters(workers: int) -> int:
    """A zeroed shared block of ``workers`` counters, as a descriptor to pass to them."""
    fd = os.memfd_create("popbox-worker-connections", os.MFD_CLOEXEC)
    # Memory, not disk, but sized sparse it would get its page on a worker's first
    # store, and a page the kernel cannot give then is a SIGBUS: allocate it now,
    # where a failure is an error the supervisor reports at start.
    os.posix_fallocate(fd, 0, 8 * workers)
    return fd


class AcceptBalance:
    """One worker's view of the counters: its own to write, the others' to compare."""

    def __init__(self, fd: int, index: int, workers: int, *, defer: float = DEFER) -> None:
        """``defer``: seconds this worker, when busier, leaves a connection to the others."""
        self.defer = defer
        self._map = mmap.mmap(fd, 8 * workers)
        self._counters = memoryview(self._map).cast("Q")
        self._index = index
        self._held = 0
        self._counters[index] = 0  # a restarted worker holds nothing yet

    def opened(self) -> None:
        self._held += 1
        self._counters[self._index] = self._held

    def closed(self) -> None:
        self._held -= 1
        self._counters[self._index] = self._held

    def busier_than_another(self) -> bool:
        """True when some other worker holds ``MARGIN`` or more fewer connections."""
        threshold = self._held - MARGIN
        return any(held <= threshold for held in self._counters)
