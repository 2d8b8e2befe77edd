"""Client processes for the load generator, so that the client keeps up with the server.

Theory of operation: ``run_parallel`` splits a ``Spec``'s connections (and idle
sessions, and users, round-robin) over ``processes`` client processes, spawned so that
no event loop or thread is inherited.  Each runs ``loadgen.run_spec`` on its own event
loop (uvloop when installed, as for the server) and sends its ``Result`` back over a
pipe; the results are merged.  All processes start at the same wall-clock instant and
stop at the same deadline, so a rate is simply operations over the window.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from typing import TYPE_CHECKING, Any

from loadgen import Result, Spec, run_spec

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

__all__ = ["ClientProcesses", "raise_fd_limit", "run_parallel"]

BOOT_TIMEOUT = 60.0  # seconds a client process may take to start its interpreter


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def event_loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop  # noqa: PLC0415 - optional: the stdlib loop is the fallback
    except ImportError:
        return asyncio.run
    return uvloop.run


def _process_main(spec: Spec, control: Connection) -> None:
    raise_fd_limit()
    # The start instant is sent once every process has started: a fixed one chosen
    # before spawning passes unused on a loaded machine, where starting an interpreter
    # can take longer than the lead, and a late process would measure nothing.
    control.send(("booted", None))
    spec.start_at = control.recv()
    try:
        result = event_loop_runner()(run_spec(spec, control))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        result = Result()
        result.fail(exc)
    control.send(("done", result))
    control.close()


class ClientProcesses:
    """``processes`` spawned clients sharing a scenario; ``users`` are dealt round-robin."""

    def __init__(self, spec: Spec, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs = []
        for n in range(processes):
            share = Spec(**{f: getattr(spec, f) for f in spec.__slots__})  # type: ignore[attr-defined]
            share.users = spec.users[n::processes] or spec.users
            share.concurrency = _split(spec.concurrency, processes, n)
            share.sessions = _split(spec.sessions, processes, n)
            share.rate = spec.rate / processes
            parent, child = context.Pipe()
            proc = context.Process(target=_process_main, args=(share, child), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def start(self, lead: float, timeout: float) -> float:
        """Wait until every process has started, then start them all ``lead`` s from now."""
        for pipe in self._pipes:
            self._receive(pipe, "booted", timeout)
        start_at = time.time() + lead
        for pipe in self._pipes:
            pipe.send(start_at)
        return start_at

    def wait_ready(self, timeout: float) -> int:
        """Idle: wait until every process holds its sessions; returns how many are open."""
        return sum(self._receive(pipe, "ready", timeout) for pipe in self._pipes)

    def release(self) -> None:
        for pipe in self._pipes:
            pipe.send("check")

    def results(self, timeout: float) -> Result:
        merged = Result()
        for pipe in self._pipes:
            merged.merge(self._receive(pipe, "done", timeout))
        for proc in self._procs:
            proc.join(10)
        return merged

    def terminate(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)

    @staticmethod
    def _receive(pipe: Connection, kind: str, timeout: float) -> Any:
        if not pipe.poll(timeout):
            raise TimeoutError(f"a client process sent no {kind!r} within {timeout:.0f} s")
        what, value = pipe.recv()
        if what != kind:
            raise RuntimeError(f"a client process sent {what!r}, expected {kind!r}: {value}")
        return value


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (index < total % parts)


def run_parallel(spec: Spec, processes: int, *, lead: float = 1.0) -> Result:
    """Run ``spec`` on ``processes`` client processes, starting ``lead`` s after all are up."""
    clients = ClientProcesses(spec, processes)
    try:
        spec.start_at = clients.start(lead, BOOT_TIMEOUT)
        return clients.results(lead + spec.duration + spec.timeout + 30)
    finally:
        clients.terminate()
