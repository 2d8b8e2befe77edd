"""Prometheus metrics, the store timing proxy, and the /metrics + /healthz HTTP listener.

Theory of operation: every process has one ``Metrics`` (its own ``CollectorRegistry``,
no global default registry, so tests can run several servers in one process).  Sessions,
listeners and the LMTP server count into it; ``TimedStore`` wraps the store and times
every call into a histogram.

The HTTP listener is a few lines of asyncio (``asyncio.start_server``), not
prometheus_client's thread server: /healthz must ask the store, whose connections live on
the event loop, and the listener then stops with the rest of the server on SIGTERM.

With several worker processes the supervisor serves HTTP: on each scrape it asks every
worker for ``Metrics.export()`` over the control channel and renders the sums
(``render_merged``), so one scrape sees the whole node.  Counters of a worker that died
are lost with it (Prometheus' ``rate()`` treats that as a counter reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from popbox import __version__
from popbox.config import parse_address
from popbox.observability.tallies import StoreTimes, Traffic
from popbox.store.base import (
    MaildropHandle,
    Pending,
    StoreError,
    StorePermanentError,
    StoreTemporaryError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

    from popbox.store.base import MailStore

__all__ = [
    "CONTENT_TYPE",
    "Export",
    "Metrics",
    "MetricsHttpServer",
    "TimedMaildrop",
    "TimedStore",
    "check_health",
    "check_store",
    "export_registry",
    "render_merged",
    "start_metrics",
    "timed_store",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_TIMEOUT = 5.0
_HTTP_TIMEOUT = 10.0
_HTTP_MAX_HEADER = 8192

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


class TimedStore:
    """Wraps a store: every coroutine method is timed into ``popbox_store_operation_seconds``.

    Everything else (attributes, plain methods) passes straight through, so backends
    with extra capabilities keep them.  ``StoreError`` subclasses that are answers rather
    than failures (an unknown user, a locked maildrop) are not counted as errors.
    """

    def __init__(self, store: MailStore, metrics: Metrics) -> None:
        self.wrapped = store
        self._metrics = metrics
        self._handle_timers = _HandleTimers(
            metrics.store_seconds.labels("fetch"),
            metrics.store_errors.labels("fetch"),
            metrics.store_seconds.labels("commit"),
            metrics.store_errors.labels("commit"),
        )
        self._open_seconds = metrics.store_seconds.labels("open_maildrop")
        self._open_errors = metrics.store_errors.labels("open_maildrop")

    async def open_maildrop(self, name: str) -> MaildropHandle:
        """Timed as ``open_maildrop``; the handle's waits as ``fetch``, UPDATE as ``commit``."""
        start = time.perf_counter()
        try:
            handle = await self.wrapped.open_maildrop(name)
        except StoreError as exc:
            if _is_failure(exc):
                self._open_errors.inc()
            raise
        finally:
            self._open_seconds.observe(time.perf_counter() - start)
        return TimedMaildrop(handle, self._handle_timers)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if not inspect.iscoroutinefunction(attribute):
            if inspect.ismethod(attribute):
                setattr(self, name, attribute)  # later lookups skip __getattr__
            return attribute
        histogram = self._metrics.store_seconds.labels(name)
        errors = self._metrics.store_errors.labels(name)

        @functools.wraps(attribute)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            except StoreError as exc:
                if _is_failure(exc):
                    errors.inc()
                raise
            finally:
                histogram.observe(time.perf_counter() - start)

        setattr(self, name, timed)  # later lookups skip __getattr__
        return timed


class _HandleTimers(NamedTuple):
    fetch_seconds: Any
    fetch_errors: Any
    commit_seconds: Any
    commit_errors: Any


class TimedMaildrop:
    """A ``MaildropHandle`` whose reads and commit a ``TimedStore`` times."""

    __slots__ = ("_timed", "messages", "wrapped")

    def __init__(self, handle: MaildropHandle, timers: _HandleTimers) -> None:
        self.wrapped = handle
        self.messages = handle.messages
        self._timed = timers

    def body_now(self, uid: int) -> bytes | Pending | None:
        """Failures count as ``fetch`` errors; answers are not timed.

        This is the RETR hot path: most answers come from a copy read ahead, and two
        clock reads and a histogram observation would cost more than the answer.
        """
        try:
            return self.wrapped.body_now(uid)
        except StoreError as exc:
            if _is_failure(exc):
                self._timed.fetch_errors.inc()
            raise

    async def body(self, uid: int) -> bytes | None:
        timed = self._timed
        start = time.perf_counter()
        try:
            return await self.wrapped.body(uid)
        except StoreError as exc:
            if _is_failure(exc):
                timed.fetch_errors.inc()
            raise
        finally:
            timed.fetch_seconds.observe(time.perf_counter() - start)

    async def commit(self, deleted: Sequence[int], retrieved: Sequence[int], at: float) -> int:
        timed = self._timed
        start = time.perf_counter()
        try:
            return await self.wrapped.commit(deleted, retrieved, at)
        except StoreError as exc:
            if _is_failure(exc):
                timed.commit_errors.inc()
            raise
        finally:
            timed.commit_seconds.observe(time.perf_counter() - start)

    async def close(self) -> None:
        await self.wrapped.close()


def timed_store(store: MailStore, metrics: Metrics) -> MailStore:
    """``store`` behind a ``TimedStore`` (which has every method of the store it wraps)."""
    return cast("MailStore", TimedStore(store, metrics))


def _is_failure(exc: StoreError) -> bool:
    return isinstance(exc, StoreTemporaryError | StorePermanentError)


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
    """``GET /metrics`` and ``GET /healthz`` over HTTP/1.0-style one-request connections."""

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        health: Callable[[], Awaitable[tuple[bool, str]]],
    ) -> None:
        self._render = render
        self._health = health
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        return bound_host, bound_port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HTTP_TIMEOUT)
            status, body, content_type = await self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            status, body, content_type = "400 Bad Request", b"bad request\n", "text/plain"
        with contextlib.suppress(OSError):
            writer.write(
                (
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode("ascii")
                + body
            )
            await asyncio.wait_for(writer.drain(), _HTTP_TIMEOUT)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _HTTP_TIMEOUT)

    async def _respond(self, head: bytes) -> tuple[str, bytes, str]:
        if len(head) > _HTTP_MAX_HEADER:
            return "431 Request Header Fields Too Large", b"headers too large\n", "text/plain"
        method, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method != b"GET":
            return "405 Method Not Allowed", b"only GET\n", "text/plain"
        if path == b"/metrics":
            return "200 OK", await self._render(), CONTENT_TYPE
        if path == b"/healthz":
            ok, text = await self._health()
            return (
                ("200 OK" if ok else "503 Service Unavailable"),
                text.encode() + b"\n",
                ("text/plain"),
            )
        return "404 Not Found", b"not found: try /metrics or /healthz\n", "text/plain"


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
