"""popbox's build: pure Python, or with POPBOX_COMPILE=1 its hot modules compiled by mypyc.

Why mypyc: a small RETR is one command cycle of the sans-IO core, the session driver and
the store, and compiled they cost about a quarter less server CPU (bench/RESULTS.md).
The compiled modules are the same typed sources (mypy --strict); nothing is written in C
by hand, and the pure-Python build behaves the same (CI runs the tests on both).
Compiling needs mypy and a C compiler (Debian: gcc, python3-dev):

    pip install mypy 'setuptools>=77' && POPBOX_COMPILE=1 pip install --no-build-isolation .
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

# The command cycle: framing, parsing, state machine, replies, the session around it, and
# the SQLite store that reads the bodies.  Not protocol/testing.py (helpers for tests) nor
# protocol/message_info.py (a named tuple the stores build: it stays a plain Python class,
# as it was in store/base.py).
_INTERPRETED = {"testing.py", "message_info.py"}
COMPILED = [
    *sorted(str(p) for p in Path("src/popbox/protocol").glob("*.py") if p.name not in _INTERPRETED),
    "src/popbox/server/session.py",
    "src/popbox/server/ends.py",
    "src/popbox/server/link.py",
    "src/popbox/server/outbox.py",
    "src/popbox/server/budget.py",
    "src/popbox/server/mailflow.py",
    "src/popbox/server/observe.py",
    "src/popbox/server/progress.py",
    "src/popbox/store/readahead.py",
    "src/popbox/store/sqlite.py",
    "src/popbox/store/sqlite_maildrop.py",
    "src/popbox/observability/tallies.py",
]


def _extensions() -> list[object]:
    if os.environ.get("POPBOX_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 - only a compiled build needs mypy

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_extensions())
