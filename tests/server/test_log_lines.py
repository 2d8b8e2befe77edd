"""Log lines stay whole when several processes write one stream.

A supervisor and its workers share one stderr (a file, a pipe, journald's socket).  Each
event must reach it in one ``write``: written as the line and then its newline, two
processes' events interleaved as ``{A}{B}`` followed by two newlines, and a reader of the
JSON log lost both, which made ``tests/ops/test_kill_torture.py`` miss the supervisor's
``worker_started`` or ``worker_ready`` now and then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from popbox.observability.log import make_logger

if TYPE_CHECKING:
    from pathlib import Path

WRITERS = 3
LINES_EACH = 20_000
CHILD = """
import sys
from popbox.observability.log import make_logger
log = make_logger(json=True).bind(worker=int(sys.argv[1]))
for n in range(int(sys.argv[2])):
    log.info("lmtp_delivered", user="alice", transaction="f893d0dc3509", uid=n, size=844)
"""


class Recorder:
    """A text stream that keeps each ``write`` call apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("json_logs", [True, False])
def test_each_event_is_one_write_ending_its_line(*, json_logs: bool) -> None:
    stream = Recorder()
    log = make_logger(json=json_logs, stream=stream)  # type: ignore[arg-type]

    log.info("worker_ready", worker=0)
    log.warning("worker_exited", worker=1, status=-9)

    assert len(stream.writes) == 2, stream.writes
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in stream.writes)
    assert "worker_ready" in stream.writes[0]
    assert "worker_exited" in stream.writes[1]


def test_processes_sharing_stderr_never_split_each_other_s_lines(tmp_path: Path) -> None:
    shared = tmp_path / "stderr.log"
    with shared.open("wb") as stderr:
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(index), str(LINES_EACH)], stderr=stderr
            )
            for index in range(WRITERS)
        ]
        statuses = [writer.wait(120) for writer in writers]
    assert statuses == [0] * WRITERS

    lines = shared.read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""  # the last line ends too
    broken = []
    per_writer = [0] * WRITERS
    for line in lines:
        try:
            per_writer[json.loads(line)["worker"]] += 1
        except ValueError:
            broken.append(line)
    assert not broken, f"{len(broken)} of {len(lines)} lines were not one event: {broken[:3]}"
    assert per_writer == [LINES_EACH] * WRITERS
