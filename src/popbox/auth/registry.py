"""Mechanism name → factory.  CAPA's SASL line and the AUTH lookup both read it.

The registry is built per server from the configuration (``build_registry``), never
held in a module global, so two servers in one process can offer different mechanisms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from popbox.auth.base import AuthContext, Mechanism
    from popbox.config import Config

__all__ = ["Registry", "build_registry"]


class Registry:
    """The SASL mechanisms one server offers, in the order CAPA lists them."""

    def __init__(
        self, mechanisms: Sequence[tuple[str, bool, Callable[[AuthContext], Mechanism]]]
    ) -> None:
        self._factories = {name: factory for name, _, factory in mechanisms}
        self._offered = tuple((name, plaintext) for name, plaintext, _ in mechanisms)

    def offered(self) -> tuple[tuple[str, bool], ...]:
        """(name, sends the password itself) per mechanism, for ``ConnectionSettings``."""
        return self._offered

    def create(self, name: str, context: AuthContext) -> Mechanism:
        """A fresh mechanism object for one exchange; ``name`` must be offered."""
        return self._factories[name](context)


def build_registry(config: Config) -> Registry:  # noqa: ARG001 - mechanisms will read their settings
    """The mechanisms this server offers.  USER/PASS is not SASL and is always there."""
    return Registry([])
