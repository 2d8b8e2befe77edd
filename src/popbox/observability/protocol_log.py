"""Exchange's POP3 protocol log: one CSV line per protocol event, written off the event loop.

Theory of operation: sessions call ``ProtocolLog.event`` on the event loop; it builds
one tuple and puts it on a queue (no formatting, no I/O).  One writer thread per
process takes everything queued, formats it as CSV and writes it to the current file
in one call, so a burst of events costs one write; the file rolls over when an event's
time falls in a new period (hourly, daily, weekly, monthly) or the next line would pass
the per-file size.  Rolling happens between two lines in the one thread that writes, so
no line is lost or written twice across it; ``close`` puts a sentinel behind every
event already queued and waits for the thread, so nothing queued before shutdown is
lost either.

When a write fails (a full disk, a read-only filesystem) or the queue is full (the
disk cannot keep up), lines are dropped and counted: the process's structured log says
so once per outage, and the protocol log says how many went missing once it can write
again.  Serving never waits for the disk.

Layout (Exchange 2010/2013 "Protocol logging for POP3 and IMAP4", TechNet dd335141):
date-time (``yyyy-mm-ddThh:mm:ss.fffZ``, UTC), connector-id (not used for POP3, left
empty as the documentation says), session-id, sequence-number (from 0 per session),
local-endpoint and remote-endpoint (``ip:port``), event, data, context.  The event
characters are those of Exchange's protocol logs: ``+`` connect, ``-`` disconnect,
``>`` sent, ``<`` received, ``*`` information (the POP3 page names "a single character";
the characters follow Exchange's transport protocol log, as no public POP3 sample shows
them otherwise).  Each file opens with ``#Software``, ``#Version``, ``#Log-type``,
``#Date`` and ``#Fields`` lines, as Exchange's logs do.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from popbox import __version__
from popbox.observability.log_files import LogFiles

if TYPE_CHECKING:
    import structlog

    from popbox.config import Config
    from popbox.observability.log_files import Rollover

__all__ = ["FIELDS", "MAX_QUEUED", "ProtocolLog", "open_protocol_log"]

FIELDS: Final = (
    "date-time",
    "connector-id",
    "session-id",
    "sequence-number",
    "local-endpoint",
    "remote-endpoint",
    "event",
    "data",
    "context",
)
MAX_QUEUED = 200_000  # events waiting for the writer; beyond, they are dropped and counted
BATCH = 4096  # events the writer formats and writes in one call at most
WARN_INTERVAL = 60.0  # seconds without a lost line that end an outage (one warning each)

# An event as queued: time, session-id, sequence-number, local, remote, event, data, context.
Event = tuple[float, str, int, str, str, str, str, str]
_STOP: Final = object()


def timestamp(when: float) -> str:
    """Exchange's date-time: UTC, milliseconds, ``Z``."""
    moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ProtocolLog:
    """One process's protocol log: a queue, a writer thread, a set of files."""

    def __init__(  # noqa: PLR0913 - the four Set-PopSettings knobs and two caps
        self,
        directory: str,
        *,
        process: str,
        rollover: Rollover,
        per_file_size: int,
        max_total_size: int,
        max_age: float,
        version: str,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._files = LogFiles(
            directory,
            process=process,
            rollover=rollover,
            per_file_size=per_file_size,
            max_total_size=max_total_size,
            max_age=max_age,
        )
        self._version = version
        self._log = log
        self._queue: queue.SimpleQueue[Event | object] = queue.SimpleQueue()
        self._overflow = 0  # events refused because the queue was full (event loop only)
        self._overflow_told = 0  # how many of those the protocol log has reported (writer)
        self._failed = 0  # lines the writer could not write since it last said so
        self._last_failure = -WARN_INTERVAL - 1.0  # monotonic time of the last lost line
        self._buffer = io.StringIO()  # the writer's; one line at a time
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._thread = threading.Thread(target=self._run, name="protocol-log", daemon=True)
        self._thread.start()

    def event(  # noqa: PLR0913, PLR0917 - one column each, in the log's order
        self,
        when: float,
        session: str,
        sequence: int,
        local: str,
        remote: str,
        kind: str,
        data: str = "",
        context: str = "",
    ) -> None:
        """Queue one event; never blocks, never raises (event loop only)."""
        if self._queue.qsize() >= MAX_QUEUED:
            self._overflow += 1  # written by this thread only; the writer reads it
            if self._overflow == 1:  # once per process: the writer thread says the rest
                self._log.warning("protocol_log_dropping", reason="the writer is behind")
            return
        self._queue.put((when, session, sequence, local, remote, kind, data, context))

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, then stop the thread.

        Blocking: call it from a thread (``asyncio.to_thread``) or at the end of a process.
        """
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < BATCH and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = batch[-1] is _STOP
            self._write([e for e in batch if isinstance(e, tuple)])
        self._files.close()

    def _write(self, events: list[Event]) -> None:
        """Queue each event's line in its file, then write the batch with one call.

        Lines lost before are reported by a notice at the head of the batch; the count
        starts again only once the whole batch, notice included, has been written.
        """
        if not events:
            return
        overflow = self._overflow  # the event loop's count, read once
        failed = self._failed
        missing = failed + overflow - self._overflow_told
        noticed = False
        if missing:
            notice = f"protocol log dropped {missing} lines (disk full, unwritable or too slow)"
            noticed = self._line(events[0][0], ("", "", "", "", "*", notice, ""))
        for when, *columns in events:
            if not self._line(when, tuple(columns)):
                self._failed += 1
        lost = self._files.flush()
        if noticed and not lost and self._failed == failed:
            self._failed, self._overflow_told = 0, overflow  # the file says so now
        self._flushed(lost - 1 if noticed and lost else lost)

    def _line(self, when: float, columns: tuple[object, ...]) -> bool:
        """Queue one line, rolling over first if it is due; False: it was lost."""
        out = self._buffer
        out.seek(0)
        out.truncate()
        self._csv.writerow((timestamp(when), "", *columns))
        line = out.getvalue().encode("utf-8")
        if not self._files.fits(when, len(line)):
            try:
                self._flushed(self._files.roll(when, self._header(when)))
            except OSError as exc:
                self._failing(exc)
                return False
        self._files.add(line)
        return True

    def _flushed(self, lost: int) -> None:
        if not lost:
            return
        self._failed += lost
        self._failing(self._files.error)

    def _failing(self, exc: OSError | None) -> None:
        # Once per outage: a disk that is full lets a small write through now and then
        # (the rest of a page), so an outage ends only after a quiet WARN_INTERVAL.
        now = time.monotonic()
        quiet = now - self._last_failure > WARN_INTERVAL
        self._last_failure = now
        if quiet:
            error = (exc.strerror or str(exc)) if exc is not None else "unknown"
            self._log.warning("protocol_log_dropping", directory=self._files.directory, error=error)

    def _header(self, when: float) -> bytes:
        return (
            "#Software: popbox\r\n"
            f"#Version: {self._version}\r\n"
            "#Log-type: POP3 Protocol Log\r\n"
            f"#Date: {timestamp(when)}\r\n"
            f"#Fields: {','.join(FIELDS)}\r\n"
        ).encode()


def open_protocol_log(config: Config, log: structlog.typing.FilteringBoundLogger) -> ProtocolLog:
    """This process's protocol log as ``[protocol_log]`` describes it.

    Each process writes its own files, named by its process id: worker processes share
    the directory, never a file.
    """
    settings = config.protocol_log
    directory = settings.directory or str(config.data_dir / "logs" / "pop3")
    try:  # at start, so that a wrong directory is named once instead of dropping lines
        Path(directory).mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as exc:
        msg = f"protocol_log.directory: {directory}: {exc.strerror or exc}"
        raise OSError(exc.errno, msg) from None
    return ProtocolLog(
        directory,
        process=str(os.getpid()),
        rollover=settings.rollover,
        per_file_size=settings.per_file_size,
        max_total_size=settings.max_total_size,
        max_age=settings.max_age_days * 86400,
        version=__version__,
        log=log,
    )
