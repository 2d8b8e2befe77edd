"""The protocol log's files: naming, rolling over, caps on total size and age.

Used by the protocol log's writer thread only (``protocol_log.py``), so nothing here is
shared between threads.  File names are ``POP3<period>-<process>-<n>.LOG``: the period
the lines belong to (``2025010114`` hourly, ``20250101`` daily, the Monday's date
weekly, ``202501`` monthly), the process that writes it (several worker processes write
one directory, each its own files, so no two processes ever append to one file), and a
number that grows when a file reaches the per-file size within its period.

Lines are collected and written per batch with one ``write``; a write that fails (a
full disk) is cut back to the last whole line, so a file never holds half a line.

Pruning (after each roll): files older than ``max_age`` go, then the oldest while the
directory holds more than ``max_total_size``.  A process removes its own closed files
and any file not written since the current period began; the current files of the
other processes are never touched, so nobody's open file is removed under it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Literal

__all__ = ["LogFiles", "Rollover", "period_of"]

Rollover = Literal["hourly", "daily", "weekly", "monthly"]
PREFIX = "POP3"
SUFFIX = ".LOG"


def period_of(when: float, rollover: Rollover) -> tuple[str, float]:
    """The period ``when`` falls in: its name in file names, and when it began (UTC)."""
    moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    if rollover == "hourly":
        start = moment.replace(minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%d%H"), start.timestamp()
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if rollover == "daily":
        return day.strftime("%Y%m%d"), day.timestamp()
    if rollover == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        return start.strftime("%Y%m%d"), start.timestamp()
    start = day.replace(day=1)
    return start.strftime("%Y%m"), start.timestamp()


class LogFiles:
    """The files one process writes, and the one it writes now."""

    def __init__(  # noqa: PLR0913 - the rollover and its caps
        self,
        directory: str,
        *,
        process: str,
        rollover: Rollover,
        per_file_size: int,
        max_total_size: int,
        max_age: float,
    ) -> None:
        self.directory = directory
        self._dir = Path(directory)
        self._process = process
        self._rollover: Rollover = rollover
        self._per_file_size = per_file_size  # 0: roll by time only
        self._max_total_size = max_total_size  # 0: no cap
        self._max_age = max_age  # seconds; 0: no cap
        self._fd: int | None = None
        self._path: Path | None = None
        self._period = ""
        self._period_start = 0.0
        self._size = 0  # octets the file holds plus what waits in ``_pending``
        self._good_size = 0  # octets the file holds, all of them whole lines
        self._pending: list[bytes] = []
        self._pending_lines = 0
        self._mine: list[Path] = []  # this process's closed files, oldest first
        self.error: OSError | None = None  # the last failed write's

    def fits(self, when: float, octets: int) -> bool:
        """Whether a line at ``when`` of ``octets`` goes into the current file."""
        if self._fd is None or period_of(when, self._rollover)[0] != self._period:
            return False
        limit = self._per_file_size
        return not limit or self._size == self._good_size == 0 or self._size + octets <= limit

    def roll(self, when: float, header: bytes) -> int:
        """Close the current file and open the next one, starting with ``header``.

        Returns the number of lines lost writing out the old file's last batch.
        Raises ``OSError`` when the new file cannot be opened (no file is open then).
        """
        lost = self.flush() if self._fd is not None else 0
        self._close_current()
        self._period, self._period_start = period_of(when, self._rollover)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._next_path()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = self._good_size = os.fstat(self._fd).st_size
        self._prune()
        self._pending.append(header)
        self._size += len(header)
        return lost

    def add(self, line: bytes) -> None:
        """Queue one line for the current file (``fits`` said it goes there)."""
        self._pending.append(line)
        self._pending_lines += 1
        self._size += len(line)

    def flush(self) -> int:
        """Write what is queued; returns how many lines were lost (0: all went out).

        The error of a failed write is kept in ``error`` for the caller to report.
        """
        if not self._pending or self._fd is None:
            return 0
        data = b"".join(self._pending)
        lines, self._pending, self._pending_lines = self._pending_lines, [], 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.error = exc
            # Cut back to the last whole line, so the next batch starts a line of its own.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good_size)
            self._size = self._good_size
            return lines
        self._good_size = self._size
        return 0

    def close(self) -> None:
        self._close_current()

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._path is not None:
                self._mine.append(self._path)

    def _next_path(self) -> Path:
        stem = f"{PREFIX}{self._period}-{self._process}-"
        taken = {p.name for p in self._dir.glob(f"{stem}*{SUFFIX}")}
        number = 1
        while f"{stem}{number}{SUFFIX}" in taken:
            number += 1
        return self._dir / f"{stem}{number}{SUFFIX}"

    def _prune(self) -> None:
        if not self._max_total_size and not self._max_age:
            return
        files: list[tuple[float, int, Path]] = []
        for path in self._dir.glob(f"{PREFIX}*{SUFFIX}"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # another process pruned it
            files.append((info.st_mtime, info.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        newest = files[-1][0] if files else 0.0
        for mtime, size, path in files:
            if path == self._path or not (path in self._mine or mtime < self._period_start):
                continue
            too_old = bool(self._max_age) and newest - mtime > self._max_age
            too_big = bool(self._max_total_size) and total > self._max_total_size
            if not (too_old or too_big):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
            if path in self._mine:
                self._mine.remove(path)
