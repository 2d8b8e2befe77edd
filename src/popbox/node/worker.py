"""One worker process of a supervised node: ``python -m popbox.node.worker``.

Started only by the supervisor (``node/supervisor.py``), with the listening sockets and
one end of its control channel as inherited file descriptors.  It asks the supervisor
for the configuration, builds its own context (store connections, TLS, metrics), accepts
on the inherited sockets and says ``ready``.  It stops (draining its sessions) on
SIGTERM, SIGINT, a ``stop`` request, or when the control channel closes because the
supervisor is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections import Counter
from typing import TYPE_CHECKING

from popbox.delivery.retention import run_retention
from popbox.net.balance import AcceptBalance
from popbox.node import app, eventloop
from popbox.node.control import Channel, Message, decode_config
from popbox.observability.log import make_logger
from popbox.observability.metrics import check_store
from popbox.server.lifecycle import apply_config, reload_tls
from popbox.server.limits import LimitSettings, Refused, take_one

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.net.bind import Bound
    from popbox.server.context import ServerContext

__all__ = ["SupervisorLimiter", "main"]

ADMIT_TIMEOUT = 2.0  # seconds; past that a connection is admitted rather than left hanging
HELLO_TIMEOUT = 30.0


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
    parser.add_argument("--control", type=int, required=True, help="control channel fd")
    parser.add_argument("--listener", action="append", default=[], help="KIND:FD")
    parser.add_argument("--balance", help="FD:WORKERS: the workers' connection counters")
    args = parser.parse_args(argv)
    bound: list[Bound] = []
    for spec in args.listener:
        kind, _, fd = spec.partition(":")
        bound.append((kind, socket.socket(fileno=int(fd))))
    control = socket.socket(fileno=args.control)
    balance = None
    if args.balance:
        fd, _, workers = args.balance.partition(":")
        balance = AcceptBalance(int(fd), args.index, int(workers))
    eventloop.run(_run(args.index, control, bound, balance))
    return 0


async def _run(
    index: int, control: socket.socket, bound: list[Bound], balance: AcceptBalance | None
) -> None:
    stop = asyncio.Event()
    box: dict[str, ServerContext] = {}

    async def handle(message: Message) -> Message | None:
        return await _answer(message, box.get("context"), stop)

    channel = await Channel.open(control, handle)
    async with asyncio.timeout(HELLO_TIMEOUT):
        config = decode_config((await channel.request("hello"))["config"])
    settings = config.server
    log = make_logger(json=settings.json_logs, level=settings.log_level).bind(worker=index)
    context = await app.build_context(config, log=log)
    context.limits = SupervisorLimiter(channel, LimitSettings.from_config(config.server))
    context.balance = balance
    box["context"] = context
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The supervisor sends reloads over the channel; a stray SIGHUP must not kill us.
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_tls(context))
    try:
        servers, _ = await app.start_servers(context, bound)
        # One retention sweeper per node (E0005): worker 0's, restarted along with it.
        sweeper = (
            loop.create_task(run_retention(context.store, config.retention, context.log))
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
            await context.store.close()
        await channel.close()


async def _answer(message: Message, context: ServerContext | None, stop: asyncio.Event) -> Message:
    op = message.get("op")
    if op == "stop":
        stop.set()
        return {}
    if context is None:
        return {"error": "not started yet"}
    if op == "metrics":
        return {"export": context.metrics.export()}
    if op == "health":
        ok, text = await check_store(context.store)
        return {"ok": ok, "text": text}
    if op == "reload":
        apply_config(context, decode_config(message["config"]))
        reload_tls(context)
        return {}
    return {"error": f"unknown op {op!r}"}


if __name__ == "__main__":
    sys.exit(main())
