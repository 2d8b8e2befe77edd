"""The accept loop every listening socket runs, POP3's and LMTP's alike.

Theory of operation: ``AcceptLoop`` waits until its socket is readable, then takes
whatever is queued (up to ``ACCEPT_BATCH``, as asyncio's own servers do: one accept per
loop iteration capped logins/s when many clients connect) and starts ``serve(conn,
peer)`` as a task per connection.  The task is *pending* until ``serve`` calls
``handed_over()`` (a protocol owns the socket from then on and drains itself on stop):
``close()`` cancels pending tasks, and a task cancelled before it ever ran closes its
socket here, since ``serve``'s own cleanup never started.

With several workers on one socket the loop defers to less loaded workers
(``net/balance.py``).  When accept() fails for want of resources (EMFILE, ENFILE,
ENOBUFS, ENOMEM) the loop backs off ``BACKOFF`` seconds instead of spinning, and
``AcceptFailures`` logs ``accept_failed`` at most once per ``FAILURE_LOG_INTERVAL``,
naming the limit that was hit and how many failures the line stands for: at 10 failures
a second per worker and listener, one line each would bury everything else in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import resource
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Coroutine

    import structlog

    from popbox.net.balance import AcceptBalance

    # serve(conn, peer): peer is what accept() gives, (host, port[, flowinfo, scope]) for
    # TCP and "" for a unix socket.
    Serve = Callable[[socket.socket, Any], Coroutine[object, object, None]]

__all__ = [
    "ACCEPT_BATCH",
    "BACKOFF",
    "FAILURE_LOG_INTERVAL",
    "AcceptFailures",
    "AcceptLoop",
    "readable",
]

ACCEPT_BATCH = 64  # connections taken from the queue per readiness event
BACKOFF = 0.1  # seconds without accepting after a failure
FAILURE_LOG_INTERVAL = 10.0  # seconds between two accept_failed lines of one listener


def _limit_hit(exc: OSError) -> str:
    """Which resource ran out, as an operator would look it up."""
    if exc.errno == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"open files of this process (RLIMIT_NOFILE, ulimit -n: {soft})"
    if exc.errno == errno.ENFILE:
        return "open files of the whole system (fs.file-max)"
    if exc.errno in (errno.ENOBUFS, errno.ENOMEM):
        return "kernel memory for sockets"
    return "not a resource limit"


class AcceptFailures:
    """Rate-limits the ``accept_failed`` warning of one listener.

    The first failure is logged at once; later ones are counted, and the next line comes
    when ``FAILURE_LOG_INTERVAL`` has passed since the last, with ``failures`` saying how
    many accepts failed since then (this one included).
    """

    def __init__(
        self,
        log: structlog.typing.FilteringBoundLogger,
        kind: str,
        *,
        interval: float = FAILURE_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._kind = kind
        self._interval = interval
        self._clock = clock
        self._last_line: float | None = None
        self._unlogged = 0

    def failed(self, exc: OSError) -> None:
        self._unlogged += 1
        now = self._clock()
        if self._last_line is not None and now - self._last_line < self._interval:
            return
        code = errno.errorcode.get(exc.errno or 0, "unknown")
        self._log.warning(
            "accept_failed",
            listener=self._kind,
            errno=code,
            limit=_limit_hit(exc),
            failures=self._unlogged,
            error=exc.strerror or str(exc),
        )
        self._last_line = now
        self._unlogged = 0


class AcceptLoop:
    """Accepts on one listening socket and runs ``serve`` once per connection."""

    def __init__(
        self,
        sock: socket.socket,
        serve: Serve,
        *,
        failures: AcceptFailures,
        balance: AcceptBalance | None = None,
    ) -> None:
        self._sock = sock
        self._serve = serve
        self._failures = failures
        self._balance = balance
        self._task: asyncio.Task[None] | None = None
        self.connections: set[asyncio.Task[None]] = set()  # done when ``serve`` returns
        self._pending: set[asyncio.Task[None]] = set()  # not yet handed over

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        """Stop accepting now: close the socket (the kernel refuses new connections from
        here on) and cancel the connections not yet handed over."""
        if self._task is not None:
            self._task.cancel()
        if self._sock.fileno() >= 0:
            # Before the socket closes: the loop's own removal finds it closed and skips.
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        for task in list(self._pending):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the loop has stopped (connections handed over may still run)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def handed_over(self) -> None:
        """Called by ``serve`` once a protocol owns its connection: ``stop`` leaves it be."""
        if (task := asyncio.current_task()) is not None:
            self._pending.discard(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        balance = self._balance
        while True:
            await readable(loop, self._sock)
            if balance is not None and balance.busier_than_another():
                # A worker holding fewer connections takes this one, unless it has not
                # within the balance's defer time (busy, stuck or gone): net/balance.py.
                await asyncio.sleep(balance.defer)
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, peer = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    break  # none left, or another worker took it
                except ConnectionAbortedError:
                    continue  # reset by its client while queued: take the next one
                except OSError as exc:  # EMFILE and friends: back off instead of spinning
                    self._failures.failed(exc)
                    await asyncio.sleep(BACKOFF)
                    break
                conn.setblocking(False)  # noqa: FBT003 - socket's own API
                self._start(loop, conn, peer)
                if balance is not None and balance.busier_than_another():
                    break  # the rest of the queue is for a less loaded worker

    def _start(self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: Any) -> None:
        task = loop.create_task(self._serve(conn, peer))
        self.connections.add(task)
        self._pending.add(task)
        if (balance := self._balance) is not None:
            balance.opened()
            task.add_done_callback(lambda _: balance.closed())
        # Before _pending.discard: a task cancelled before its first step never runs
        # serve's own cleanup, and its socket would be left to the garbage collector.
        task.add_done_callback(functools.partial(self._close_unserved, conn))
        task.add_done_callback(self.connections.discard)
        task.add_done_callback(self._pending.discard)

    def _close_unserved(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        if task.cancelled() and task in self._pending:
            conn.close()


async def readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` is readable (a connection queued, or data to peek at)."""
    fd = sock.fileno()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        # Closed meanwhile (``AcceptLoop.close`` removed the reader first): the number
        # may already belong to another socket, whose reader is not ours to remove.
        if sock.fileno() == fd:
            loop.remove_reader(fd)
