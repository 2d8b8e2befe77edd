"""The shared accept loop: back-off and one rate-limited log line when descriptors run out.

Issue 15 item 12: while fds were exhausted each worker logged ``accept_failed`` ten times
a second; now the first failure is logged at once, the rest once per interval with a
count, and each line names the limit that was hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import resource
import socket
from pathlib import Path

import pytest

from popbox.net.accept import BACKOFF, FAILURE_LOG_INTERVAL, AcceptFailures, AcceptLoop
from popbox.observability.log import make_logger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(stream: io.StringIO, name: str = "accept_failed") -> list[dict[str, object]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [event for event in found if event["event"] == name]


@pytest.mark.parametrize(
    ("code", "limit"),
    [
        (errno.EMFILE, "open files of this process (RLIMIT_NOFILE, ulimit -n: "),
        (errno.ENFILE, "open files of the whole system (fs.file-max)"),
        (errno.ENOBUFS, "kernel memory for sockets"),
        (errno.ENOMEM, "kernel memory for sockets"),
    ],
)
def test_each_line_names_the_limit_that_was_hit(code, limit):
    stream = io.StringIO()
    failures = AcceptFailures(make_logger(json=True, stream=stream), "lmtp", clock=Clock())
    failures.failed(OSError(code, os.strerror(code)))
    [line] = events(stream)
    assert line["listener"] == "lmtp"
    assert line["errno"] == errno.errorcode[code]
    assert str(line["limit"]).startswith(limit)
    assert line["error"] == os.strerror(code)
    assert line["failures"] == 1
    assert line["level"] == "warning"


def test_failures_within_the_interval_are_counted_not_logged():
    stream = io.StringIO()
    clock = Clock()
    failures = AcceptFailures(make_logger(json=True, stream=stream), "pop3", clock=clock)
    emfile = OSError(errno.EMFILE, "Too many open files")
    for _ in range(10):  # one second of failures at BACKOFF apart
        failures.failed(emfile)
        clock.now += BACKOFF
    assert [line["failures"] for line in events(stream)] == [1]
    clock.now += FAILURE_LOG_INTERVAL - 10 * BACKOFF
    failures.failed(emfile)
    assert [line["failures"] for line in events(stream)] == [1, 10]


@contextlib.contextmanager
def descriptors_exhausted():
    """Lower this process's RLIMIT_NOFILE to its highest open descriptor, then take every
    free number below it: the next accept() fails with EMFILE until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd.name) for fd in Path("/proc/self/fd").iterdir())
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        yield highest + 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_fd_exhaustion_logs_once_per_interval_and_recovers():
    stream = io.StringIO()
    clock = Clock()
    failures = AcceptFailures(make_logger(json=True, stream=stream), "pop3", clock=clock)
    served: list[object] = []

    async def serve(conn: socket.socket, peer: object) -> None:
        served.append(peer)
        conn.close()

    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    accept = AcceptLoop(listening, serve, failures=failures)
    client = socket.create_connection(listening.getsockname()[:2], timeout=5)
    try:
        with descriptors_exhausted() as limit:
            accept.start()
            await asyncio.sleep(BACKOFF * 4.5)  # five failed accepts, one line
            [first] = events(stream)
            assert first["errno"] == "EMFILE"
            assert (
                first["limit"] == f"open files of this process (RLIMIT_NOFILE, ulimit -n: {limit})"
            )
            assert first["failures"] == 1
            clock.now += FAILURE_LOG_INTERVAL
            await asyncio.sleep(BACKOFF * 1.5)
            second = events(stream)[1]
            assert second["failures"] >= 4
            assert served == []
        async with asyncio.timeout(5):
            while not served:  # descriptors are back: the queued connection is taken
                await asyncio.sleep(BACKOFF / 10)
        assert len(events(stream)) == 2
    finally:
        accept.close()
        await accept.wait_closed()
        client.close()


async def test_connection_cancelled_before_it_ran_is_closed():
    """A connection accepted but not yet served when accepting stops is closed, not leaked."""

    async def serve(conn: socket.socket, peer: object) -> None:
        raise AssertionError("never reached")

    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    failures = AcceptFailures(make_logger(stream=io.StringIO()), "pop3")
    accept = AcceptLoop(listening, serve, failures=failures)
    ours, theirs = socket.socketpair()
    try:
        accept._start(asyncio.get_running_loop(), ours, ("127.0.0.1", 1))
        accept.close()  # cancels the task before its first step
        for _ in range(3):  # the task's cancelled step, then its done callbacks
            await asyncio.sleep(0)
        assert ours.fileno() == -1
        assert listening.fileno() == -1
    finally:
        theirs.close()
        ours.close()
