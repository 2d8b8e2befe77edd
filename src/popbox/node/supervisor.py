"""Several worker processes on the same listeners, under a supervisor.

Theory of operation: with ``[server] workers = N`` (N > 1; 0 means one per CPU core)
``popbox serve`` becomes a supervisor.  It first checks and creates, once, what every
worker needs (certificate, auth secret, store: ``server/startup.py``), so that a bad
file is one line and a first start is not raced by N processes.  It binds every
listening socket itself, then starts N workers (``python -m popbox.node.worker``, one per
slot of ``node/worker_slots.py``) that inherit those sockets and all accept on them: the
kernel hands each new connection to one of them, so every core serves one port.

Why bind once in the supervisor instead of one SO_REUSEPORT socket per worker: with port
0 each worker would get a different port, and the ``listening KIND HOST:PORT`` lines could
not name one; a worker that dies would take the connections waiting in its own accept
queue with it, while a shared queue lets the other workers pick them up; and a
privileged port is bound once.  Why fresh interpreters instead of ``fork``: forking a
process that runs an asyncio loop copies its epoll set and signal wiring into the child,
which then sees events meant for the parent.

Each worker has a control channel to the supervisor (``node/control.py``): the worker
gets its configuration there, asks the supervisor to admit connections and logins
against the node's limits (``node/worker_limits.py``: one count for all workers), and answers
requests for its metrics and its store's health, which the supervisor's HTTP listener
adds up.  A worker that exits is started again, after a delay that doubles with each
quick failure (0.5 s up to 30 s); one that cannot start at all reports a one-line reason
over its channel, which the supervisor prints once.  Workers die with the supervisor
(``worker.die_with_parent``).  SIGTERM (or SIGINT) drains: workers stop accepting and
finish their sessions up to ``pop3.shutdown_grace``; SIGHUP re-reads the configuration
file, which the supervisor validates and sends to every worker, and each worker reloads
its TLS certificate.  With ``tls.acme_directory`` the supervisor alone runs ACME
(``acme/manager.py``) and tells every worker to reload TLS when it installed a renewal.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from popbox.acme.manager import start_acme
from popbox.auth.bruteforce import GuardSettings, LoginGuard
from popbox.clock import SystemClock
from popbox.config import ConfigError, load
from popbox.net.balance import create_counters
from popbox.net.bind import ListenError, address_of, bind_listeners
from popbox.node import shared_guard
from popbox.node.admin_bridge import AdminBridge, SupervisorNode
from popbox.node.control import Channel, Message, encode_config
from popbox.node.node_report import NodeReport
from popbox.node.worker_limits import WorkerLimits
from popbox.node.worker_slots import Slot, Slots
from popbox.server.lifecycle import merge_reload
from popbox.server.limits import LimitSettings
from popbox.server.startup import StartupError, close_listeners, prepare

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path
    from typing import Any

    import structlog

    from popbox.acme.manager import AcmeManager
    from popbox.config import Config
    from popbox.net.bind import Bound
    from popbox.observability.metrics import MetricsHttpServer
    from popbox.store.base import MailStore

__all__ = ["Supervisor", "WorkerStartError", "worker_count"]

READY_TIMEOUT = 60.0  # seconds a new worker has to open its store and start accepting
STABLE_AFTER = 10.0  # a worker that ran this long did not crash at start: reset the delay
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


def worker_count(config: Config) -> int:
    return config.server.workers or os.cpu_count() or 1


class WorkerStartError(StartupError):
    """A worker exited before it was ready at startup: the line it reported, if any."""


class Supervisor:
    """Starts, watches and stops the workers of one node."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None,
        announce: Callable[[str], None],
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.config = config
        self._path = config_path
        self._announce = announce
        self._log = log.bind(process="supervisor")
        self._limits = WorkerLimits(LimitSettings.from_config(config.server))
        # The workers' brute-force scores, when the store does not share them (SQLite).
        self._guard = shared_guard.NodeScores(
            LoginGuard(GuardSettings.from_config(config)), self._publish_scores
        )
        self._slots = Slots(worker_count(config))
        self._bound: list[Bound] = []
        self._balance_fd = -1  # the workers' shared connection counters (net/balance.py)
        self._started = False
        self._stopping = False
        self._changed = asyncio.Event()
        self._registry = CollectorRegistry(auto_describe=True)
        self._workers_ready = Gauge(
            "popbox_workers", "Worker processes accepting connections", registry=self._registry
        )
        self._restarts = PromCounter(
            "popbox_worker_restarts", "Workers started again after exiting", registry=self._registry
        )
        self._report = NodeReport(self._registry, self._slots.ask_ready)
        self._tasks: set[asyncio.Task[object]] = set()
        self._acme: AcmeManager | None = None
        self._tls_generation = 0  # certificates installed by ACME since start
        self._admin: AdminBridge | None = None  # [admin] listen: node/admin_bridge.py

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain every worker and return.

        Raises ``StartupError`` (``WorkerStartError`` for a worker), ``TlsConfigError``
        or ``ListenError`` with one line saying why the node cannot start.
        """
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        store, metrics = await self._prepare_and_bind()
        self._balance_fd = create_counters(len(self._slots))
        keepers = [loop.create_task(self._keep(slot)) for slot in self._slots]
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        try:
            try:
                await self._wait_ready()
            finally:
                await store.close()
            self._started = True
            await self._start_services(None if metrics is None else metrics[1])
            self._log.info("ready", workers=len(self._slots), listeners=len(self._bound))
            await stop.wait()
            self._log.info("stopping", workers=len(self._slots))
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self._admin is not None:
                await self._admin.stop()
            self._stopping = True
            await self._slots.stop(keepers, self.config.pop3.shutdown_grace, self._log)
            close_listeners(self._bound)
            os.close(self._balance_fd)
            if metrics is not None:
                await metrics[0].stop()
            if self._acme is not None:
                await self._acme.stop()

    async def _start_services(self, metrics_address: tuple[str, int] | None) -> None:
        """The workers are ready: say what listens, then renew certificates, serve admin."""
        for kind, sock in self._bound:
            host, port = address_of(sock)
            self._announce(
                f"listening {kind} {host}:{port}" if port >= 0 else f"listening {kind} {host}"
            )
        if metrics_address is not None:
            self._announce("listening metrics {}:{}".format(*metrics_address))
        if self._acme is not None:
            for host, port in self._acme.listening:
                self._announce(f"listening acme-http {host}:{port}")
            self._acme.run(self._tls_installed)
        if self.config.admin.listen:
            await self._start_admin()

    async def _tls_installed(self) -> None:
        """A renewed certificate is on disk: every worker loads it (as on SIGHUP); one
        started before and not ready yet is told when it is (``_worker_ready``)."""
        self._tls_generation += 1
        await self._slots.ask_all("reload_tls")

    async def _prepare_and_bind(
        self,
    ) -> tuple[MailStore, tuple[MetricsHttpServer, tuple[str, int]] | None]:
        """What can fail at start, done before any worker runs (server/startup.py).

        Returns the store, open until every worker has opened its own, and the metrics
        listener (bound, serving 503 on /healthz until a worker is ready) with its address.
        An ACME certificate is obtained first, if configured and missing: this process
        alone talks to the CA and answers its challenges.
        """
        self._acme = await start_acme(self.config, log=self._log, clock=SystemClock())
        try:
            store = await prepare(self.config)
            try:
                self._bound = bind_listeners(self.config, lmtp=True)
                address = self.config.server.metrics_listen
                metrics = await self._report.start_http(address) if address else None
            except BaseException:
                close_listeners(self._bound)
                self._bound = []
                await store.close()
                raise
        except BaseException:
            if self._acme is not None:
                await self._acme.stop()
            raise
        if self._acme is not None:
            self._registry.register(self._acme.metrics)
        return store, metrics

    # -- starting and watching -------------------------------------------------------

    async def _wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self._all_ready(), READY_TIMEOUT)
        except TimeoutError:
            msg = f"the workers were not ready after {READY_TIMEOUT:g} s (their log says why)"
            raise WorkerStartError(msg) from None

    async def _all_ready(self) -> None:
        while not all(slot.ready.is_set() for slot in self._slots):
            for slot in self._slots:
                if slot.exit_status is not None:
                    # Every worker would say the same: the first to fail speaks for all.
                    raise WorkerStartError(
                        slot.failure
                        or f"worker {slot.index} exited with status {slot.exit_status} "
                        "before it was ready (its log above says why)"
                    )
            self._changed.clear()
            await self._changed.wait()

    async def _keep(self, slot: Slot) -> None:
        """Run the worker of ``slot``, and again each time it exits, until stopping."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            started = loop.time()
            status = await self._run_worker(slot)
            if self._stopping or not self._started:
                return
            # Backing off is for a worker that cannot start or crashes at once: one that
            # was serving and then died (killed, out of memory) is replaced at once, or
            # a node whose workers get killed now and then would run short of them.
            stable = slot.served or loop.time() - started >= STABLE_AFTER
            failures = 1 if stable else failures + 1
            delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
            self._restarts.inc()
            self._log.warning(
                "worker_exited",
                worker=slot.index,
                status=status,
                error=slot.failure,
                restart_in=delay,
            )
            await asyncio.sleep(delay)

    async def _run_worker(self, slot: Slot) -> int:
        process, ours = await slot.spawn(self._bound, self._balance_fd, len(self._slots))
        slot.tls_generation = self._tls_generation
        slot.channel = await Channel.open(ours, functools.partial(self._on_message, slot))
        self._log.info("worker_started", worker=slot.index, pid=process.pid)
        try:
            status = await process.wait()
        finally:
            await slot.channel.close()
            slot.channel = None
            slot.ready.clear()
            self._limits.forget(slot.held)
        slot.exit_status = status
        self._workers_ready.set(self._slots.ready_count())
        self._changed.set()
        return status

    async def _on_message(self, slot: Slot, message: Message) -> Message | None:
        op = message.get("op")
        if op == "hello":
            return {"config": encode_config(self.config)}
        if op == "failed":
            slot.failure = str(message.get("error"))
            return {}
        if op == "ready":
            self._worker_ready(slot)
            return None
        if op == "protocol" and self._admin is not None:
            self._admin.deliver(message)
            return None
        if op in shared_guard.OPS:
            return self._guard.answer(message)
        return self._limits.answer(slot.held, message)

    def _worker_ready(self, slot: Slot) -> None:
        slot.ready.set()
        slot.served = True
        self._log.info("worker_ready", worker=slot.index)
        self._workers_ready.set(self._slots.ready_count())
        self._changed.set()
        if slot.tls_generation != self._tls_generation:
            self._spawn(slot.ask("reload_tls"))
        if self._admin is not None and slot.channel is not None:
            self._admin.node.tell(slot.channel)

    # -- reload, metrics, health --------------------------------------------------------

    def _spawn_reload(self) -> None:
        self._spawn(self._reload())

    def _spawn(self, job: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self) -> bool:
        """SIGHUP (or the admin API); False when the file did not validate."""
        if self._path is not None:
            try:
                loaded = load(self._path, required=True)
            except ConfigError as exc:
                self._log.error("config_reload_failed", error=str(exc))
                return False
            self.config, ignored = merge_reload(self.config, loaded)
            self._limits.settings = LimitSettings.from_config(self.config.server)
            self._log.info("config_reloaded", path=str(self._path), needs_restart=ignored or None)
        await self._slots.ask_all("reload", config=encode_config(self.config))
        return True

    async def _start_admin(self) -> None:
        node = SupervisorNode(
            config=lambda: self.config,
            config_path=self._path,
            ask_all=self._slots.ask_all,
            reload=self._reload,
            metrics=self._report.exports,
            health=self._report.health,
        )
        node.attach(self._slots.ready_channels)
        try:
            self._admin, bound = await AdminBridge.start(node, self._log, self._guard)
        except OSError as exc:
            raise ListenError("admin.listen", ", ".join(self.config.admin.listen), exc) from exc
        for host, port in bound:
            self._announce(f"listening admin {host}:{port}")

    def _publish_scores(self, update: Message) -> None:
        self._slots.notify_all(shared_guard.UPDATE, **update)
