"""Running the server: build the shared pieces from the configuration, serve, shut down.

``serve`` is what ``popbox serve`` and ``popbox demo`` run.  It builds the store, the
TLS context, the mechanism registry and the logger and passes them down (no global
state), prints one ``listening KIND HOST:PORT`` line per socket once it accepts, and runs
until SIGTERM or SIGINT, then drains (DESIGN.md section 4).  SIGHUP reloads the TLS
certificate and the configuration without dropping sessions (``server/lifecycle.py``).
With several workers configured, ``serve`` supervises them instead
(``node/supervisor.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from popbox.acme.manager import AcmeManager, start_acme
from popbox.admin.app import AdminServer
from popbox.admin.node import LocalNode
from popbox.auth.bruteforce import GuardSettings, LoginGuard
from popbox.auth.guard import ProcessGuard
from popbox.auth.passwords import Argon2Params, PasswordVerifier
from popbox.clock import SystemClock
from popbox.delivery.lmtp_server import LmtpServer
from popbox.delivery.retention import run_retention
from popbox.directory.factory import DirectoryDeps, build_chain
from popbox.net.bind import ListenError, bind_listeners
from popbox.node.supervisor import Supervisor, worker_count
from popbox.observability.log import make_logger
from popbox.observability.metrics import Metrics, MetricsHttpServer, start_metrics
from popbox.observability.store_timing import timed_store
from popbox.server import lifecycle, startup
from popbox.server.cluster import cluster_limiter, shared_guard
from popbox.server.context import ServerContext
from popbox.server.limits import LimitSettings, LocalLimiter
from popbox.server.listener import Pop3Server
from popbox.server.startup import close_listeners

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import structlog

    from popbox.clock import Clock
    from popbox.config import Config
    from popbox.directory.base import Status
    from popbox.net.bind import Bound, Listening
    from popbox.store.base import MailStore

__all__ = ["build_context", "serve", "start_servers"]


async def build_context(
    config: Config,
    *,
    store: MailStore | None = None,
    log: structlog.typing.FilteringBoundLogger | None = None,
    store_patience: float = 0.0,
    clock: Clock | None = None,
) -> ServerContext:
    """Everything sessions share; opens the configured store unless one is given.

    ``store_patience``: seconds a busy store is waited for (``startup.open_store_at_start``).
    ``clock`` (the real one unless given) is the one every timer, lease and stamp reads.
    Raises ``StartupError`` or ``TlsConfigError`` with one line naming what is wrong.
    """
    metrics = Metrics()
    clock = clock or SystemClock()
    passwords = PasswordVerifier(Argon2Params.from_config(config.auth))
    startup.ensure_data_dir(config)
    tls = startup.tls_holder(config)
    registry = startup.auth_registry(config, passwords=passwords)
    if store is None:
        store = await startup.open_store_at_start(config, patience=store_patience, clock=clock.wall)
    store = timed_store(store, metrics)
    log = log or make_logger(json=config.server.json_logs, level=config.server.log_level)

    def observe(directory: str, status: Status, healthy: bool) -> None:  # noqa: FBT001
        metrics.directory_answer(directory, status.value, healthy=healthy)

    directories = build_chain(
        DirectoryDeps(store=store, verifier=passwords, log=log, clock=clock, config=config),
        observe=observe,
    )
    local = ProcessGuard(LoginGuard(GuardSettings.from_config(config), clock=clock.monotonic))
    node_limits = LocalLimiter(LimitSettings.from_config(config.server))
    return ServerContext(
        config=config,
        store=store,
        registry=registry,
        tls=tls,
        log=log,
        metrics=metrics,
        limits=cluster_limiter(store, node_limits, config, clock.wall),
        passwords=passwords,
        directories=directories,
        guard=shared_guard(store, config, local, clock.wall) or local,
        clock=clock,
    )


async def start_servers(
    context: ServerContext, sockets: Sequence[Bound] | None = None
) -> tuple[list[Pop3Server | LmtpServer], list[Listening]]:
    """Bind every listener (POP3, then LMTP); returns the servers and what they listen on.

    ``sockets``: listening sockets a supervisor bound for its workers, used instead of
    binding the configured addresses.
    """
    pop3 = Pop3Server(context)
    servers: list[Pop3Server | LmtpServer] = [pop3]
    listening = await pop3.start(
        None if sockets is None else [(kind, s) for kind, s in sockets if kind != "lmtp"]
    )
    if context.config.lmtp.listen:
        lmtp = LmtpServer(context)
        try:
            listening += await lmtp.start(
                None if sockets is None else [s for kind, s in sockets if kind == "lmtp"]
            )
        except BaseException:
            await pop3.stop()
            raise
        servers.append(lmtp)
    return servers, listening


async def serve(
    config: Config,
    *,
    store: MailStore | None = None,
    announce: Callable[[str], None] | None = None,
    ready: Callable[[list[Listening]], None] | None = None,
    config_path: Path | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then drain and return.

    ``ready`` is called once every listener accepts, with the real addresses (port 0 in
    the configuration is an ephemeral port by then).  With ``server.workers`` above 1
    (and no ``store`` given) this process supervises worker processes instead
    (``node/supervisor.py``).  SIGHUP re-reads ``config_path`` when given.
    """
    say = announce or _print_flush
    log = make_logger(json=config.server.json_logs, level=config.server.log_level)
    if store is None and worker_count(config) > 1:
        await Supervisor(config, config_path=config_path, announce=say, log=log).run()
        return
    clock = SystemClock()
    acme = await start_acme(config, log=log, clock=clock)
    try:
        context = await build_context(config, store=store, log=log, clock=clock)
        try:
            # Bound here rather than by each server so that an address in use is named.
            bound = bind_listeners(config, lmtp=True)
        except BaseException:
            await context.store.close()
            raise
        try:
            await _serve_on(context, bound, say, ready, config_path, acme=acme)
        finally:
            close_listeners(bound)
            with contextlib.suppress(Exception):
                await context.directories.close()
            with contextlib.suppress(Exception):
                await context.store.close()
    finally:
        if acme is not None:
            await acme.stop()


async def _serve_on(  # noqa: PLR0913 - serve's pieces, handed to the one loop that runs them
    context: ServerContext,
    bound: list[Bound],
    say: Callable[[str], None],
    ready: Callable[[list[Listening]], None] | None,
    config_path: Path | None,
    *,
    acme: AcmeManager | None,
) -> None:
    """``serve`` of one process, on the listening sockets it bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: lifecycle.reload(context, config_path))
    metrics: MetricsHttpServer | None = None
    admin: AdminServer | None = None
    try:
        # Bound before the POP3 servers start, so that an address in use stops nothing
        # that runs; announced after them, as the supervisor does.
        metrics_lines: list[str] = []
        try:
            metrics = await start_metrics(
                context.config.server.metrics_listen,
                context.metrics,
                context.store,
                metrics_lines.append,
                context.directories.health,
            )
        except OSError as exc:
            address = context.config.server.metrics_listen
            raise ListenError("server.metrics_listen", address, exc) from exc
        servers, listening = await start_servers(context, bound)
        for kind, host, port in listening:
            say(f"listening {kind} {host}:{port}" if port >= 0 else f"listening {kind} {host}")
        for line in metrics_lines:
            say(line)
        if acme is not None:
            _renew_certificates(acme, context, say)
        admin = await _start_admin(context, config_path, say)
        sweeper = loop.create_task(
            run_retention(context.store, context.config.retention, context.log, clock=context.clock)
        )
        if ready is not None:
            ready(listening)
        context.log.info("ready", listeners=len(listening))
        await stop.wait()
        context.log.info("stopping", sessions=len(context.sessions))
        sweeper.cancel()
        for server in servers:
            await server.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if metrics is not None:
            await metrics.stop()
        if admin is not None:
            await admin.stop()


async def _start_admin(
    context: ServerContext, config_path: Path | None, say: Callable[[str], None]
) -> AdminServer | None:
    """The admin listener of a single-process server (sessions are in this process)."""
    if not context.config.admin.listen:
        return None
    admin = AdminServer(
        node=LocalNode(context, config_path),
        store=context.store,
        log=context.log,
        clock=context.clock,
        passwords=context.passwords,
        guard=context.guard,
        tls=context.tls,
    )
    try:
        bound = await admin.start()
    except OSError as exc:
        raise ListenError("admin.listen", ", ".join(context.config.admin.listen), exc) from exc
    for host, port in bound:
        say(f"listening admin {host}:{port}")
    return admin


def _renew_certificates(
    acme: AcmeManager, context: ServerContext, say: Callable[[str], None]
) -> None:
    """Announce the HTTP-01 listener and renew from now on, reloading TLS as SIGHUP does."""
    context.metrics.registry.register(acme.metrics)
    for host, port in acme.listening:
        say(f"listening acme-http {host}:{port}")

    async def installed() -> None:
        lifecycle.reload_tls(context)

    acme.run(installed)


def _print_flush(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
