"""The counters a session touches on every command, kept as plain numbers.

``popbox_commands_total``, the octet counters and ``popbox_store_operation_seconds``
change on every command.  prometheus_client's ``Counter`` and ``Histogram`` take a lock
on every update and walk their labels; on the RETR path that cost as much as parsing the
command.  These are touched only by the event loop's thread and read when
``/metrics`` is scraped (each is a prometheus_client collector), with the same names,
labels and meaning.
"""

from __future__ import annotations

import bisect
import itertools
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

__all__ = ["KNOWN_VERBS", "STORE_BUCKETS", "StoreTimes", "Traffic"]

# Verbs get their own label value; anything else a client sends is counted as OTHER, so
# a client cannot create unbounded label values (time series) by inventing commands.
KNOWN_VERBS = frozenset(
    [
        "USER",
        "PASS",
        "APOP",
        "AUTH",
        "STLS",
        "CAPA",
        "QUIT",
        "STAT",
        "LIST",
        "RETR",
        "TOP",
        "DELE",
        "NOOP",
        "RSET",
        "UIDL",
    ]
) | {"SASL-RESPONSE"}
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Traffic:
    """``popbox_commands_total`` and the octet counters, as plain integers.

    They change on every command, and a prometheus_client ``Counter`` takes a lock and
    walks its labels on each ``inc()``: on the RETR path that cost as much as parsing the
    command.  Only the event loop's thread counts into these; a scrape reads them.
    """

    def __init__(self) -> None:
        self.commands: dict[tuple[str, bool], int] = {}
        self.sent = 0
        self.received = 0

    def command(self, verb: str, *, ok: bool) -> None:
        # Verbs a client invents are counted as OTHER, so the table (and the number of
        # time series) stays bounded.
        key = (verb if verb in KNOWN_VERBS else "OTHER", ok)
        self.commands[key] = self.commands.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        commands = CounterMetricFamily(
            "popbox_commands", "Commands answered", labels=["verb", "result"]
        )
        for (verb, ok), count in sorted(self.commands.items()):
            commands.add_metric([verb, "ok" if ok else "err"], count)
        yield commands
        yield CounterMetricFamily("popbox_sent_bytes", "Octets sent to clients", self.sent)
        yield CounterMetricFamily(
            "popbox_received_bytes", "Octets received from clients", self.received
        )


class StoreTimes:
    """``popbox_store_operation_seconds``: a histogram per operation, as plain numbers.

    A RETR is timed, and prometheus_client's ``Histogram.observe`` takes a lock per
    bucket and per sum; these are touched only by the event loop's thread.
    """

    def __init__(self) -> None:
        self._series: dict[str, _TimeSeries] = {}

    def labels(self, operation: str) -> _TimeSeries:
        series = self._series.get(operation)
        if series is None:
            series = self._series[operation] = _TimeSeries()
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "popbox_store_operation_seconds",
            "Time spent in mail store calls",
            labels=["operation"],
        )
        for operation, series in sorted(self._series.items()):
            cumulative = list(itertools.accumulate(series.counts))
            buckets = [(f"{b}", n) for b, n in zip(STORE_BUCKETS, cumulative, strict=False)]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([operation], buckets, series.total)
        yield family


class _TimeSeries:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(STORE_BUCKETS) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket ("le").
        self.counts[bisect.bisect_left(STORE_BUCKETS, seconds)] += 1
        self.total += seconds
