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

from popbox.auth.bruteforce import GuardSettings, LoginGuard
from popbox.auth.passwords import DEFAULT_PARAMS
from popbox.auth.registry import build_registry
from popbox.delivery.lmtp_server import LmtpServer
from popbox.delivery.retention import run_retention
from popbox.node.supervisor import Supervisor, worker_count
from popbox.observability.log import make_logger
from popbox.observability.metrics import Metrics, MetricsHttpServer, start_metrics, timed_store
from popbox.server import lifecycle
from popbox.server.context import ServerContext
from popbox.server.limits import LimitSettings, LocalLimiter
from popbox.server.listener import Pop3Server
from popbox.server.tls import TlsContextHolder, load_or_create_certificate
from popbox.store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import structlog

    from popbox.config import Config
    from popbox.net.bind import Bound, Listening
    from popbox.store.base import MailStore

__all__ = ["build_context", "serve", "start_servers"]


async def build_context(
    config: Config,
    *,
    store: MailStore | None = None,
    log: structlog.typing.FilteringBoundLogger | None = None,
) -> ServerContext:
    """Everything sessions share; opens the configured store unless one is given."""
    metrics = Metrics()
    if store is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(config.storage.backend, data_dir=config.data_dir, dsn=config.storage.dsn)
        await store.open()
    tls = None
    if config.pop3.tls_listen or config.pop3.listen:
        cert, key = load_or_create_certificate(
            config.tls.cert_file, config.tls.key_file, config.data_dir
        )
        tls = TlsContextHolder(cert, key)
    return ServerContext(
        config=config,
        store=timed_store(store, metrics),
        registry=build_registry(config),
        tls=tls,
        log=log or make_logger(json=config.server.json_logs, level=config.server.log_level),
        metrics=metrics,
        limits=LocalLimiter(LimitSettings.from_config(config.server)),
        password_params=DEFAULT_PARAMS,
        guard=LoginGuard(GuardSettings.from_config(config)),
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
    if store is None and worker_count(config) > 1:
        log = make_logger(json=config.server.json_logs, level=config.server.log_level)
        await Supervisor(config, config_path=config_path, announce=say, log=log).run()
        return
    context = await build_context(config, store=store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: lifecycle.reload(context, config_path))
    metrics: MetricsHttpServer | None = None
    try:
        servers, listening = await start_servers(context)
        for kind, host, port in listening:
            say(f"listening {kind} {host}:{port}" if port >= 0 else f"listening {kind} {host}")
        metrics = await start_metrics(
            config.server.metrics_listen, context.metrics, context.store, say
        )
        sweeper = loop.create_task(run_retention(context.store, config.retention, context.log))
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
        with contextlib.suppress(Exception):
            await context.store.close()


def _print_flush(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
