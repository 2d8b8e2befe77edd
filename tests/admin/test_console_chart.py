"""The dashboard chart's geometry: the last hour, scaled to a tidy top, newest at the right."""

from __future__ import annotations

from popbox.admin.console.chart import HEIGHT, WIDTH, chart

NOW = 1_700_000_000.0


def _entry(minutes_ago: float, logins: int) -> dict:
    return {
        "at": NOW - minutes_ago * 60,
        "logins": logins,
        "login_failures": 0,
        "deliveries": 0,
        "connections_open": 1,
    }


def test_points_span_the_hour_and_scale_to_a_tidy_top():
    drawn = chart([_entry(90, 50), _entry(60, 7), _entry(30, 3), _entry(0, 0)], NOW)
    assert drawn.top == 10  # 7 is the largest shown: the 90-minute-old 50 is outside
    logins = drawn.lines[0]
    assert logins.label == "logins / min"
    assert logins.points.split() == ["0.0,48.0", "300.0,112.0", "600.0,160.0"]
    assert logins.end == (WIDTH, HEIGHT)
    assert logins.latest == 0


def test_no_samples_draw_empty_lines_on_a_unit_axis():
    drawn = chart([], NOW)
    assert drawn.top == 1
    assert all(line.points == "" and line.end is None for line in drawn.lines)
