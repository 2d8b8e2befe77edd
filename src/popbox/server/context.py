"""What every session of one server shares; built once by ``serve`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from popbox.auth.bruteforce import LoginGuard
from popbox.auth.guard import Guard, ProcessGuard
from popbox.clock import SystemClock
from popbox.observability.metrics import Metrics
from popbox.server.budget import MemoryBudget
from popbox.server.limits import Limiter, LocalLimiter

if TYPE_CHECKING:
    from collections.abc import Callable

    import structlog

    from popbox.auth.passwords import PasswordVerifier
    from popbox.auth.registry import Registry
    from popbox.clock import Clock
    from popbox.config import Config
    from popbox.directory.chain import DirectoryChain
    from popbox.net.balance import AcceptBalance
    from popbox.observability.protocol_log import ProtocolLog
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
    passwords: PasswordVerifier  # USER/PASS's; the registry's PLAIN and LOGIN share it
    directories: DirectoryChain  # where password logins are checked, recipients looked up
    sessions: set[Any] = field(default_factory=set)  # live Pop3Protocol objects
    # Failure delays and lockouts: this process's, or shared (auth/guard.py).
    guard: Guard = field(default_factory=lambda: ProcessGuard(LoginGuard()))
    metrics: Metrics = field(default_factory=Metrics)  # this process's Prometheus counters
    limits: Limiter = field(default_factory=LocalLimiter)  # node-wide connection limits
    balance: AcceptBalance | None = None  # set in a worker of several (net/balance.py)
    clock: Clock = field(default_factory=SystemClock)  # every timer and timestamp (clock.py)
    # The Exchange-style protocol log ([protocol_log]); Pop3Server opens and closes it.
    protocol_log: ProtocolLog | None = None
    budget: MemoryBudget = field(init=False)  # large bodies in flight (server.memory_budget)
    # Users whose protocol lines an operator watches (server/roster.py): user -> sink.
    protocol_taps: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.budget = MemoryBudget(self.config.server.memory_budget, self.clock)
