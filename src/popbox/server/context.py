"""What every session of one server shares; built once by ``serve`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from popbox.auth.bruteforce import LoginGuard
from popbox.observability.metrics import Metrics
from popbox.server.limits import Limiter, LocalLimiter

if TYPE_CHECKING:
    import structlog

    from popbox.auth.passwords import Argon2Params
    from popbox.auth.registry import Registry
    from popbox.config import Config
    from popbox.net.balance import AcceptBalance
    from popbox.server.tls import TlsContextHolder
    from popbox.store.base import MailStore

__all__ = ["ServerContext"]


@dataclass(slots=True)
class ServerContext:
    config: Config
    store: MailStore
    registry: Registry
    tls: TlsContextHolder | None
    log: structlog.typing.FilteringBoundLogger
    password_params: Argon2Params
    sessions: set[Any] = field(default_factory=set)  # live Pop3Protocol objects
    guard: LoginGuard = field(default_factory=LoginGuard)  # failure delays and lockouts
    metrics: Metrics = field(default_factory=Metrics)  # this process's Prometheus counters
    limits: Limiter = field(default_factory=LocalLimiter)  # node-wide connection limits
    balance: AcceptBalance | None = None  # set in a worker of several (net/balance.py)
