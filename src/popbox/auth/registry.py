"""Mechanism name → factory.  CAPA's SASL line and the AUTH lookup both read it.

The registry is built per server from the configuration (``build_registry``), never
held in a module global, so two servers in one process can offer different mechanisms.
This module is the one place that spells the mechanism names: ``config.py`` validates
``auth.mechanisms`` against ``MECHANISMS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from popbox.auth.base import AuthContext, Mechanism
    from popbox.config import Config

__all__ = ["DEFAULT_MECHANISMS", "MECHANISMS", "Registry", "build_registry"]

PLAIN: Final = "PLAIN"
LOGIN: Final = "LOGIN"
SCRAM_SHA_256: Final = "SCRAM-SHA-256"
OAUTHBEARER: Final = "OAUTHBEARER"
XOAUTH2: Final = "XOAUTH2"

# Every name ``build_registry`` can build; ``auth.mechanisms`` picks from these.
MECHANISMS: Final = (PLAIN, LOGIN, SCRAM_SHA_256, OAUTHBEARER, XOAUTH2)
NTLM: Final = "NTLM"
GSSAPI: Final = "GSSAPI"
# Offered when the configuration says nothing: the ones that need no further settings.
DEFAULT_MECHANISMS: Final = (PLAIN, LOGIN, SCRAM_SHA_256)
# Mechanisms whose exchange carries the password (or a bearer token) itself: they follow
# ``pop3.login_type`` like USER/PASS (V0010), so CAPA hides them before TLS.
PLAINTEXT_MECHANISMS: Final = frozenset({PLAIN, LOGIN, OAUTHBEARER, XOAUTH2})
# Mechanisms that need the oauth_* settings.
OAUTH_MECHANISMS: Final = frozenset({OAUTHBEARER, XOAUTH2})


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
