"""The supervisor's worker slots: the process in each, and how the supervisor reaches it.

Theory of operation: the supervisor keeps one ``Slot`` per worker for the life of the
node, and starts a new process in it each time the last one exited.  A slot starts its
worker as a fresh interpreter (``python -m popbox.node.worker``) that inherits, by file
descriptor named on its command line, the listening sockets, the node's shared
connection counters (``net/balance.py``) and its end of a socketpair for the control
channel (``node/control.py``).  A request to a worker that is not ready, is gone or does
not answer within ``ASK_TIMEOUT`` counts as no answer, so that one stuck worker holds a
scrape, a reload or an admin request up for no longer than that.  Stopping sends every
worker SIGTERM, on which it drains, and kills those still there ``KILL_AFTER`` seconds
past ``pop3.shutdown_grace``.

Kept apart from ``node/supervisor.py``, which decides when a worker is started again and
what the workers are told: this module only holds the workers and reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.node.worker_limits import Held

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import structlog

    from popbox.net.bind import Bound
    from popbox.node.control import Channel, Message

__all__ = ["ASK_TIMEOUT", "KILL_AFTER", "Slot", "Slots"]

WORKER_MODULE = "popbox.node.worker"
KILL_AFTER = 10.0  # seconds past shutdown_grace before a worker that is still there is killed
ASK_TIMEOUT = 5.0


@dataclass(eq=False)
class Slot:
    """One worker of the node: the process in it now, and what the supervisor knows of it."""

    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    exit_status: int | None = None
    failure: str | None = None  # the one line a worker that could not start reported
    served: bool = False  # the current (or last) worker said it was ready
    tls_generation: int = 0  # the supervisor's _tls_generation when this worker started
    held: Held = field(default_factory=Held)  # what this worker holds of the limits

    async def spawn(
        self, bound: Sequence[Bound], balance_fd: int, workers: int
    ) -> tuple[asyncio.subprocess.Process, socket.socket]:
        """Start a worker in this slot: its process, and our end of its control channel.

        ``balance_fd``: the shared connection counters, one per each of ``workers``.
        """
        ours, theirs = socket.socketpair()
        fds = [theirs.fileno(), balance_fd, *(sock.fileno() for _, sock in bound)]
        argv = [sys.executable, "-m", WORKER_MODULE, "--index", str(self.index)]
        argv += ["--supervisor", str(os.getpid())]
        argv += ["--control", str(theirs.fileno())]
        argv += ["--balance", f"{balance_fd}:{workers}"]
        for kind, sock in bound:
            argv += ["--listener", f"{kind}:{sock.fileno()}"]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=fds, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
        finally:
            theirs.close()
        self.process = process
        self.failure = None
        self.served = False
        return process, ours

    async def ask(self, op: str, **fields: object) -> Message | None:
        """The worker's answer, or None: not ready, gone, or no answer in ``ASK_TIMEOUT``."""
        if self.channel is None or not self.ready.is_set():
            return None
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                return await self.channel.request(op, **fields)
        except (ConnectionError, TimeoutError):
            return None


class Slots:
    """Every slot of the node, one per worker."""

    def __init__(self, count: int) -> None:
        self._slots = [Slot(i) for i in range(count)]

    def __iter__(self) -> Iterator[Slot]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def ready_count(self) -> int:
        return sum(slot.ready.is_set() for slot in self._slots)

    def ready_channels(self) -> list[Channel]:
        return [s.channel for s in self._slots if s.channel and s.ready.is_set()]

    async def ask_all(self, op: str, **fields: object) -> list[Message | None]:
        """One answer per slot, in slot order (None where ``Slot.ask`` has none)."""
        return list(await asyncio.gather(*(s.ask(op, **fields) for s in self._slots)))

    async def ask_ready(self, op: str) -> list[Message | None]:
        """One answer per worker that is ready now."""
        ready = [slot for slot in self._slots if slot.ready.is_set()]
        return list(await asyncio.gather(*(slot.ask(op) for slot in ready)))

    def notify_all(self, op: str, **fields: object) -> None:
        for slot in self._slots:
            if slot.channel is not None:
                with contextlib.suppress(ConnectionError):
                    slot.channel.notify(op, **fields)

    async def stop(
        self,
        keepers: list[asyncio.Task[None]],
        grace: float,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        """Drain every worker for up to ``grace`` seconds, then kill what is left.

        ``keepers``: the tasks that run the slots' workers, which end as their workers exit.
        """
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(keepers, timeout=grace + KILL_AFTER)
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                log.warning("worker_killed", worker=slot.index, pid=slot.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    slot.process.kill()
        if pending:
            await asyncio.wait(pending, timeout=KILL_AFTER)
        for task in pending:
            task.cancel()
