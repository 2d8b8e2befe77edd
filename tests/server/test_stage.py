"""The session lifecycle table (server/stage.py): one stage at a time, only listed moves.

Every stage can reach CLOSED, CLOSED is final, and a move the table does not list raises
at once (a session bug is found where it happens, not as a flag combination later).
"""

from __future__ import annotations

import pytest

from popbox.server.stage import ANSWERING, TRANSITIONS, Stage, StageError, check_transition


def test_every_stage_has_a_row_and_reaches_closed():
    assert set(TRANSITIONS) == set(Stage)
    for start in Stage:
        seen, frontier = {start}, [start]
        while frontier:
            for target in TRANSITIONS[frontier.pop()]:
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert Stage.CLOSED in seen, start


def test_closed_is_final_and_closing_only_closes():
    assert TRANSITIONS[Stage.CLOSED] == frozenset()
    assert TRANSITIONS[Stage.CLOSING] == {Stage.CLOSED}
    assert Stage.CLOSING not in ANSWERING


def test_a_move_the_table_does_not_list_raises():
    assert check_transition(Stage.SERVING, Stage.UPGRADING) is Stage.UPGRADING
    with pytest.raises(StageError, match="lost to serving"):
        check_transition(Stage.LOST, Stage.SERVING)
    with pytest.raises(StageError):
        check_transition(Stage.GREETING, Stage.CLOSED)  # connection_made comes first
