"""A server's process tree as /proc shows it: members, memory and CPU time.

Dovecot is a master with many children (login, auth, one ``pop3`` per session) and
popbox may run worker processes, so every measurement covers the whole tree under the
process the bench started.  Memory is given twice: RSS counts pages shared between
processes once per process (it overstates a forking server like Dovecot), PSS divides
each shared page among its sharers (the fair share).  CPU time includes the children
that already exited (``cutime``/``cstime`` of their parent), so a login served by a
short-lived process is still counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Footprint", "cpu_seconds", "footprint", "identities", "kill_tree", "tree"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True, slots=True)
class Footprint:
    processes: int
    rss_kib: int
    pss_kib: int


def footprint(root: int) -> Footprint:
    rss = pss = count = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
            count += 1
    return Footprint(count, rss, pss)


def cpu_seconds(root: int) -> float:
    """User + system time of the tree, including children that have been reaped."""
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14..17 of stat(5); we start at 3.
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / _TICKS


def identities(pids: list[int]) -> dict[int, str]:
    """pid -> start time, so a pid reused by an unrelated process is never signalled."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            found[pid] = fields[19]
    return found


def kill_tree(members: dict[int, str], timeout: float = 10.0) -> list[int]:
    """SIGKILL whichever of ``members`` (from ``identities``) still run; returns those."""
    survivors = [pid for pid, start in members.items() if _alive(pid, start)]
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_alive(p, members[p]) for p in survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
    return survivors


def _alive(pid: int, start: str) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == start
