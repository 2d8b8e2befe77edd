"""What a node of several workers reports over HTTP: the sum of their metrics, their health.

Theory of operation: the supervisor serves ``/metrics`` and ``/healthz`` for the whole
node.  On each scrape it asks every worker for its ``Metrics.export()`` over the control
channel and renders the sums with its own families (``render_merged``); health is good
only while at least one worker is ready and every ready worker says its store and
directories answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.config import parse_address
from popbox.net.bind import ListenError
from popbox.observability.metrics import (
    Export,
    MetricsHttpServer,
    export_registry,
    render_merged,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from prometheus_client import CollectorRegistry

    from popbox.node.control import Message

__all__ = ["NodeReport"]


class NodeReport:
    """The node's metrics and health, from the supervisor's registry and its workers."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ask_ready: Callable[[str], Awaitable[Sequence[Message | None]]],
    ) -> None:
        """``ask_ready(op)``: every ready worker's answer to ``op`` (None: no answer)."""
        self._registry = registry
        self._ask_ready = ask_ready

    async def start_http(self, address: str) -> tuple[MetricsHttpServer, tuple[str, int]]:
        """Serve ``/metrics`` and ``/healthz`` on ``server.metrics_listen``."""
        server = MetricsHttpServer(self.render, self.health)
        host, port = parse_address(address, "server.metrics_listen")
        try:
            bound = await server.start(host, port)
        except OSError as exc:
            raise ListenError("server.metrics_listen", address, exc) from exc
        return server, bound

    async def render(self) -> bytes:
        return render_merged(await self.exports())

    async def exports(self) -> list[Export]:
        replies = await self._ask_ready("metrics")
        exports = [export_registry(self._registry)]
        return exports + [reply["export"] for reply in replies if reply and "export" in reply]

    async def health(self) -> tuple[bool, str]:
        replies = await self._ask_ready("health")
        if not replies:
            return False, "no worker is ready"
        for reply in replies:
            if reply is None or not reply.get("ok"):
                return False, (reply or {}).get("text", "a worker does not answer")
        return True, "ok"
