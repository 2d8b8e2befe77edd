"""One worker process of a supervised node: ``python -m popbox.node.worker``.

Started only by the supervisor (``node/supervisor.py``), with the listening sockets and
one end of its control channel as inherited file descriptors.  It asks the supervisor
for the configuration, builds its own context (store connections, TLS, metrics), accepts
on the inherited sockets and says ``ready``.  It stops (draining its sessions) on
SIGTERM, SIGINT, a ``stop`` request, or when the control channel closes because the
supervisor is gone; on Linux the kernel kills it as soon as the supervisor dies
(``die_with_parent``).  A worker that cannot start tells the supervisor why in one
line, which the supervisor prints once for the node, and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

from popbox.auth.guard import GuardUnavailable, ProcessGuard
from popbox.config import ConfigError
from popbox.delivery.retention import run_retention
from popbox.net.balance import AcceptBalance
from popbox.node import app, eventloop, shared_guard
from popbox.node.control import Channel, Message, decode_config
from popbox.observability.log import make_logger
from popbox.observability.metrics import check_health
from popbox.server import roster
from popbox.server.cluster import cluster_limiter
from popbox.server.lifecycle import apply_config, reload_tls
from popbox.server.limits import LimitSettings, Refused, take_one
from popbox.server.startup import StartupError
from popbox.server.tls import TlsConfigError
from popbox.store.base import StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.config import Config
    from popbox.delivery.lmtp_server import LmtpServer
    from popbox.net.bind import Bound
    from popbox.server.context import ServerContext
    from popbox.server.listener import Pop3Server

__all__ = ["SupervisorLimiter", "die_with_parent", "main"]

ADMIT_TIMEOUT = 2.0  # seconds; past that a connection is admitted rather than left hanging
HELLO_TIMEOUT = 30.0
REPORT_TIMEOUT = 5.0  # seconds to wait for the supervisor to take a startup failure
STORE_PATIENCE = 20.0  # seconds a busy store is waited for at start (READY_TIMEOUT is 60)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# What a worker that cannot start reports as one line: each names the file, key or
# address.  Anything else is a bug, and its traceback is what the bug report needs.
_START_ERRORS = (StartupError, TlsConfigError, ConfigError, StoreError, OSError, GuardUnavailable)


class SupervisorLimiter:
    """A ``Limiter`` that asks the supervisor, which counts for the whole node.

    If the supervisor does not answer in time the connection is admitted: limits
    protect the node from overload, and a supervisor that is gone means this worker is
    about to drain and exit anyway.

    While a limit is off (0, the default) there is nothing to count, so the worker does
    not ask: two round trips per session through one supervisor process were most of
    the cost of a login with several workers (measured with bench/).  What it admitted
    without asking it also releases without telling, so a reload that turns a limit
    on never makes the supervisor's counts go below the truth.
    """

    def __init__(self, channel: Channel, settings: LimitSettings) -> None:
        self._channel = channel
        self._settings = settings
        self._unasked_ips: Counter[str] = Counter()
        self._unasked_users: Counter[str] = Counter()

    async def admit(self, ip: str) -> Refused | None:
        if not (self._settings.max_connections or self._settings.max_connections_per_ip):
            self._unasked_ips[ip] += 1
            return None
        return await self._ask("admit", ip=ip)

    def release(self, ip: str) -> None:
        if not take_one(self._unasked_ips, ip):
            self._channel.notify("release", ip=ip)

    async def login(self, user: str) -> Refused | None:
        if not self._settings.max_sessions_per_user:
            self._unasked_users[user] += 1
            return None
        return await self._ask("login", user=user)

    def logout(self, user: str) -> None:
        if not take_one(self._unasked_users, user):
            self._channel.notify("logout", user=user)

    def configure(self, settings: LimitSettings) -> None:
        """The supervisor counts; the worker only needs to know which limits are on."""
        self._settings = settings

    async def _ask(self, op: str, **fields: str) -> Refused | None:
        try:
            async with asyncio.timeout(ADMIT_TIMEOUT):
                reply = await self._channel.request(op, **fields)
        except (ConnectionError, TimeoutError):
            return None
        refused = reply.get("refused")
        return Refused(refused[0], refused[1]) if refused else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="popbox-worker", description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--supervisor", type=int, required=True, help="the supervisor's pid")
    parser.add_argument("--control", type=int, required=True, help="control channel fd")
    parser.add_argument("--listener", action="append", default=[], help="KIND:FD")
    parser.add_argument("--balance", help="FD:WORKERS: the workers' connection counters")
    args = parser.parse_args(argv)
    die_with_parent(args.supervisor)
    bound: list[Bound] = []
    for spec in args.listener:
        kind, _, fd = spec.partition(":")
        bound.append((kind, socket.socket(fileno=int(fd))))
    control = socket.socket(fileno=args.control)
    balance = None
    if args.balance:
        fd, _, workers = args.balance.partition(":")
        balance = AcceptBalance(int(fd), args.index, int(workers))
    return eventloop.run(_run(args.index, control, bound, balance))


def die_with_parent(parent: int) -> None:
    """Make the kernel kill this process the moment ``parent`` (the supervisor) dies.

    A worker left behind by a supervisor killed with SIGKILL would go on accepting on
    the node's port, with no limits enforced and nobody to restart or stop it, and would
    keep the port from a new supervisor.  On Linux PR_SET_PDEATHSIG (prctl(2)) closes
    that gap at once, even while this process is busy; elsewhere the control channel
    closing makes the worker stop accepting and drain (``_serve``).  The standard
    library has no prctl, hence ctypes.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent:
        # The supervisor died before the request took effect: nobody is left to serve for.
        os._exit(1)


async def _run(
    index: int, control: socket.socket, bound: list[Bound], balance: AcceptBalance | None
) -> int:
    """Start, serve until told to stop; the exit status (1: could not start)."""
    stop = asyncio.Event()
    box: dict[str, ServerContext] = {}

    async def handle(message: Message) -> Message | None:
        if message.get("op") == shared_guard.UPDATE:
            scores.apply(message)  # also while starting: the copy is loaded before
            return None
        return await _answer(message, box.get("context"), stop, channel, index)

    channel = await Channel.open(control, handle)
    scores = shared_guard.WorkerGuard(channel, time.monotonic)
    try:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                config = decode_config((await channel.request("hello"))["config"])
        except (ConnectionError, TimeoutError):
            return 1  # the supervisor is gone or stuck: there is nobody to serve for
        try:
            context, servers = await _start(index, config, channel, bound, balance, scores)
        except _START_ERRORS as exc:
            # One line for the supervisor to print once, instead of a traceback per worker.
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(REPORT_TIMEOUT):
                    await channel.request("failed", error=str(exc))
            return 1
        box["context"] = context
        await _serve(index, context, servers, channel, stop)
        return 0
    finally:
        await channel.close()


async def _start(  # noqa: PLR0913, PLR0917 - what the supervisor handed this worker
    index: int,
    config: Config,
    channel: Channel,
    bound: list[Bound],
    balance: AcceptBalance | None,
    scores: shared_guard.WorkerGuard,
) -> tuple[ServerContext, list[Pop3Server | LmtpServer]]:
    settings = config.server
    log = make_logger(json=settings.json_logs, level=settings.log_level).bind(worker=index)
    # The supervisor created and migrated the store; it may still be busy for a moment.
    context = await app.build_context(config, log=log, store_patience=STORE_PATIENCE)
    node_limits = SupervisorLimiter(channel, LimitSettings.from_config(config.server))
    context.limits = cluster_limiter(context.store, node_limits, config, context.clock.wall)
    if isinstance(context.guard, ProcessGuard):  # not shared by the store: by the node
        scores.max_tracked = config.auth.max_tracked
        await scores.load()
        context.guard = shared_guard.supervisor_guard(scores, context.guard, config)
    context.balance = balance
    try:
        servers, _ = await app.start_servers(context, bound)
    except BaseException:
        await context.store.close()
        raise
    return context, servers


async def _serve(
    index: int,
    context: ServerContext,
    servers: list[Pop3Server | LmtpServer],
    channel: Channel,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The supervisor sends reloads over the channel; a stray SIGHUP must not kill us.
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_tls(context))
    try:
        # One retention sweeper per node (E0005): worker 0's, restarted along with it.
        sweeper = (
            loop.create_task(
                run_retention(
                    context.store, context.config.retention, context.log, clock=context.clock
                )
            )
            if index == 0
            else None
        )
        channel.notify("ready")
        closed = loop.create_task(channel.closed.wait())
        await asyncio.wait([closed, loop.create_task(stop.wait())], return_when="FIRST_COMPLETED")
        context.log.info("stopping", sessions=len(context.sessions), orphaned=closed.done())
        if sweeper is not None:
            sweeper.cancel()
        for server in servers:
            await server.stop()
    finally:
        with contextlib.suppress(Exception):
            await context.directories.close()
        with contextlib.suppress(Exception):
            await context.store.close()


async def _answer(
    message: Message,
    context: ServerContext | None,
    stop: asyncio.Event,
    channel: Channel,
    index: int,
) -> Message:
    op = message.get("op")
    if op == "stop":
        stop.set()
        return {}
    if context is None:
        return {"error": "not started yet"}
    if op == "metrics":
        return {"export": context.metrics.export()}
    if op == "health":
        ok, text = await check_health(context.store, context.directories.health)
        return {"ok": ok, "text": text}
    if op in {"reload", "reload_tls"}:  # reload_tls: a renewed ACME certificate
        if op == "reload":
            apply_config(context, decode_config(message["config"]))
        return {"ok": reload_tls(context)}
    return _answer_admin(message, context, channel, index)


def _answer_admin(
    message: Message, context: ServerContext, channel: Channel, index: int
) -> Message:
    """The admin listener's questions (``node/admin_bridge.py``), from this worker's roster."""
    op = message.get("op")
    if op == "sessions":
        return {"worker": index, "sessions": roster.describe_sessions(context)}
    if op == "kick":
        return {
            "kicked": roster.kick(context, session=message.get("session"), user=message.get("user"))
        }
    if op == "watch":
        roster.set_watched(
            context, message.get("users", ()), lambda line: channel.notify("protocol", line=line)
        )
        return {}
    return {"error": f"unknown op {op!r}"}


if __name__ == "__main__":
    sys.exit(main())
