"""The dashboard's chart of the last hour, as SVG geometry computed here.

Drawn by the server as plain SVG elements (no chart library, no script, no inline
style: the page's Content-Security-Policy forbids all three): one polyline per series
over a 60-minute axis ending now, scaled to the largest value shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HEIGHT", "SERIES", "WIDTH", "Chart", "chart"]

WIDTH = 600  # SVG user units of the plot area
HEIGHT = 160
WINDOW = 3600.0  # seconds the chart spans
# (key in the per-minute entries, legend, CSS class that colours it)
SERIES = (
    ("logins", "logins / min", "series-logins"),
    ("login_failures", "failed logins / min", "series-failures"),
    ("deliveries", "deliveries / min", "series-deliveries"),
    ("connections_open", "connections", "series-connections"),
)


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    css: str
    points: str  # the polyline's "x,y x,y ..." attribute
    latest: int
    end: tuple[float, float] | None  # the latest point, marked (a single one is no line)


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    top: int  # the value the top edge stands for
    lines: tuple[Line, ...]
    grid: tuple[int, ...]  # y of the horizontal grid lines


def chart(entries: list[dict[str, Any]], now: float) -> Chart:
    """The chart of ``entries`` (per-minute counts, oldest first) in the hour before ``now``."""
    shown = [e for e in entries if now - WINDOW <= e["at"] <= now]
    top = max([1, *(int(e[key]) for e in shown for key, _, _ in SERIES)])
    top = _round_up(top)
    lines = []
    for key, label, css in SERIES:
        xy = [
            (round(_x(e["at"], now), 1), round(HEIGHT - int(e[key]) * HEIGHT / top, 1))
            for e in shown
        ]
        points = " ".join(f"{x},{y}" for x, y in xy)
        latest = int(shown[-1][key]) if shown else 0
        lines.append(Line(label, css, points, latest, xy[-1] if xy else None))
    grid = tuple(round(HEIGHT * i / 4) for i in range(5))
    return Chart(WIDTH, HEIGHT, top, tuple(lines), grid)


def _x(at: float, now: float) -> float:
    return WIDTH * (1 - (now - at) / WINDOW)


def _round_up(value: int) -> int:
    """A tidy top for the axis: 1, 2, 5, 10, 20, 50, ... at least ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10
