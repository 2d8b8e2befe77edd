"""Coverage-guided fuzzing of one target of ``fuzz_targets.py`` with atheris (libFuzzer).

By hand, for as long as you like (new inputs go to the first directory; keep the
interesting ones in ``tests/fuzz/corpus/TARGET``)::

    .venv/bin/python tests/fuzz/atheris_main.py pop3 -max_total_time=600 \\
        /tmp/pop3-new tests/fuzz/corpus/pop3

``test_fuzz.py`` runs every target this way (``all``: one process, the first byte of
an input picks the target) for a few seconds in each test run.  A
crash stops the run and leaves the input in ``-artifact_prefix``: add it to the corpus
with the fix, and it is replayed by every test run from then on.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["popbox", "fuzz_targets"]):
    from fuzz_targets import TARGETS


ALL = "all"  # every target in one process: the first byte picks it (ALL_ORDER)
ALL_ORDER = sorted(TARGETS)


def every_target(data: bytes) -> None:
    if data:
        TARGETS[ALL_ORDER[data[0] % len(ALL_ORDER)]](data[1:])


def main() -> None:
    names = [*TARGETS, ALL]
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        sys.exit(f"usage: atheris_main.py {{{'|'.join(names)}}} [libFuzzer options] [CORPUS...]")
    target = every_target if sys.argv[1] == ALL else TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
