"""Prometheus metrics and the /metrics + /healthz HTTP listener.

Theory of operation: every process has one ``Metrics`` (its own ``CollectorRegistry``,
no global default registry, so tests can run several servers in one process).  Sessions,
listeners and the LMTP server count into it; ``store_timing.TimedStore`` wraps the store
and times every call into a histogram.

The HTTP listener is aiohttp on the server's own loop, not prometheus_client's thread
server: /healthz must ask the store, whose connections live on the event loop, and the
listener then stops with the rest of the server on SIGTERM.

With several worker processes the supervisor serves HTTP: on each scrape it asks every
worker for ``Metrics.export()`` over the control channel and renders the sums
(``render_merged``), so one scrape sees the whole node.  Counters of a worker that died
are lost with it (Prometheus' ``rate()`` treats that as a counter reset).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from popbox import __version__
from popbox.config import parse_address
from popbox.observability.tallies import StoreTimes, Traffic
from popbox.store.base import StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

    from popbox.store.base import MailStore

__all__ = [
    "CONTENT_TYPE",
    "Export",
    "Metrics",
    "MetricsHttpServer",
    "check_health",
    "check_store",
    "export_registry",
    "render_merged",
    "start_metrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_TIMEOUT = 5.0

Export = list[dict[str, Any]]  # one process's metric families, JSON-ready


class Metrics:
    """The counters of one process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "popbox_connections", "Connections accepted", ["listener"], registry=r
        )
        self.connections_open = Gauge(
            "popbox_connections_open", "Connections open now", ["listener"], registry=r
        )
        self.refused = Counter(
            "popbox_connections_refused",
            "Connections or logins refused by a limit or a bad PROXY header",
            ["reason"],
            registry=r,
        )
        self.logins = Counter(
            "popbox_logins", "Login attempts", ["mechanism", "result"], registry=r
        )
        self.traffic = Traffic()
        r.register(self.traffic)
        self.deliveries = Counter(
            "popbox_deliveries", "Delivery attempts per recipient", ["result"], registry=r
        )
        self.store_seconds = StoreTimes()
        r.register(self.store_seconds)
        self.store_errors = Counter(
            "popbox_store_errors", "Mail store calls that failed", ["operation"], registry=r
        )
        self.directory_answers = Counter(
            "popbox_directory_answers",
            "Answers of each user directory (ok, unknown, wrong, disabled, tempfail)",
            ["directory", "status"],
            registry=r,
        )
        self.directory_unavailable = Gauge(
            "popbox_directory_unavailable",
            "1 while a user directory cannot answer, as of its latest lookup (summed over"
            " worker processes: how many see it down)",
            ["directory"],
            registry=r,
        )
        info = Gauge("popbox_build_info", "popbox version", ["version"], registry=r)
        info.labels(__version__).set(1)

    def login(self, mechanism: str, result: str) -> None:
        """``result``: success, failure, locked, limited, store_error (or a new one)."""
        self.logins.labels(mechanism, result).inc()

    def directory_answer(self, directory: str, status: str, *, healthy: bool) -> None:
        """One answer of a user directory, and whether it is answering at all."""
        self.directory_answers.labels(directory, status).inc()
        self.directory_unavailable.labels(directory).set(0 if healthy else 1)

    def delivery(self, result: str) -> None:
        """One recipient's delivery: delivered, over_quota, unknown_user, temp_failure."""
        self.deliveries.labels(result).inc()

    def export(self) -> Export:
        return export_registry(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def export_registry(registry: CollectorRegistry) -> Export:
    """Every sample but ``_created`` ones, for the supervisor to add up across workers."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                [s.name, s.labels, s.value]
                for s in family.samples
                if not s.name.endswith("_created")
            ],
        }
        for family in registry.collect()
    ]


class _Static:
    """A collector that yields families built elsewhere."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_merged(exports: Iterable[Export]) -> bytes:
    """Sum the exports of several processes (same family, same labels) and render them.

    Gauges add up too: connections open on the node are the sum over its workers.
    ``popbox_build_info`` is the same in every worker and so is kept, not summed.
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for export in exports:
        for exported in export:
            name = exported["name"]
            if name not in families:
                families[name] = Metric(name, exported["help"], exported["type"])
                values[name] = {}
            for sample_name, labels, value in exported["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                previous = values[name].get(key, 0.0)
                keep_one = name == "popbox_build_info"
                values[name][key] = value if keep_one else previous + value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families.values()))
    return generate_latest(registry)


async def check_store(store: MailStore) -> tuple[bool, str]:
    """/healthz: can the store answer a query now?"""
    try:
        await asyncio.wait_for(store.get_user("popbox-health-check"), HEALTH_TIMEOUT)
    except (StoreError, OSError, TimeoutError) as exc:
        return False, f"store unavailable: {type(exc).__name__}"
    return True, "ok"


async def check_health(
    store: MailStore, directories: Callable[[], Mapping[str, bool]]
) -> tuple[bool, str]:
    """/healthz: the store answers, and every user directory answered its latest lookup.

    ``directories`` gives each directory's state (``DirectoryChain.health``); a
    directory in an outage makes the node unhealthy, since its users cannot log in.
    """
    ok, text = await check_store(store)
    if not ok:
        return ok, text
    down = sorted(name for name, up in directories().items() if not up)
    if down:
        return False, f"user directory unavailable: {', '.join(down)}"
    return True, "ok"


class MetricsHttpServer:
    """``GET /metrics`` and ``GET /healthz`` on an aiohttp server of their own.

    aiohttp runs on the server's event loop, so /healthz asks the store on the loop its
    connections live on, and the listener stops with the rest of the server.  The same
    two routes are also served by the admin listener (``admin/app.py``) through
    ``add_routes``.
    """

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        health: Callable[[], Awaitable[tuple[bool, str]]],
    ) -> None:
        self._render = render
        self._health = health
        self._runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        app = web.Application(middlewares=[_not_found_hint])
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        return bound_host, bound_port

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 5)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=await self._render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, text = await self._health()
        return web.Response(text=text + "\n", status=200 if ok else 503)


@web.middleware
async def _not_found_hint(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(text="not found: try /metrics or /healthz\n", status=404)


async def start_metrics(
    listen: str,
    metrics: Metrics,
    store: MailStore,
    announce: Callable[[str], None],
    directories: Callable[[], Mapping[str, bool]] = dict,
) -> MetricsHttpServer | None:
    """Serve ``metrics`` at ``listen`` (``server.metrics_listen``), if set; says where.

    /healthz asks ``store`` and ``directories`` (``check_health``).
    """
    if not listen:
        return None

    async def render() -> bytes:
        return metrics.render()

    server = MetricsHttpServer(render, lambda: check_health(store, directories))
    host, port = parse_address(listen, "server.metrics_listen")
    bound_host, bound_port = await server.start(host, port)
    announce(f"listening metrics {bound_host}:{bound_port}")
    return server
