"""Mechanism name → factory.  CAPA's SASL line and the AUTH lookup both read it.

The registry is built per server from the configuration (``build_registry``), never
held in a module global, so two servers in one process can offer different mechanisms.
The names themselves live in the leaf module ``protocol/mechanisms.py``, which the
configuration reads too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from popbox.auth import ntlm, oauth, plain, scram
from popbox.auth.jwks import JwksCache
from popbox.auth.login import LoginMechanism
from popbox.protocol.mechanisms import (
    GSSAPI,
    LOGIN,
    NTLM,
    OAUTHBEARER,
    PLAIN,
    SCRAM_SHA_256,
    XOAUTH2,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.auth.base import AuthContext, Mechanism
    from popbox.auth.passwords import PasswordVerifier
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


def build_registry(config: Config, *, passwords: PasswordVerifier | None = None) -> Registry:
    """The mechanisms ``auth.mechanisms`` names, in that order.  USER/PASS is not SASL.

    Objects every session shares (the JWKS cache, the SCRAM secret) are made here, once.
    ``passwords`` checks PLAIN's and LOGIN's passwords: the server's own, so that one
    verifier learns the configured cost from every check (default: a new one).
    """
    factories = _factories(config, passwords)
    return Registry([(name, *factories[name]()) for name in config.auth.mechanisms])


_Factory = Callable[["AuthContext"], "Mechanism"]


def _factories(
    config: Config, verifier: PasswordVerifier | None
) -> dict[str, Callable[[], tuple[bool, _Factory]]]:
    """Name → a thunk that builds the mechanism's shared state and its factory."""
    auth = config.auth
    passwords = plain.PasswordSettings(
        admins=frozenset(auth.admins),
        **({"verifier": verifier} if verifier is not None else {}),
    )

    def scram_factory() -> tuple[bool, _Factory]:
        path = Path(auth.secret_file) if auth.secret_file else config.data_dir / "auth-secret"
        settings = scram.ScramSettings(
            scram.load_or_create_secret(path), auth.scram_iterations, frozenset(auth.admins)
        )
        return scram.ScramMechanism.plaintext, lambda context: scram.ScramMechanism(
            context, settings
        )

    def bearer(kind: type[oauth.OAuthBearerMechanism | oauth.XOAuth2Mechanism]) -> _Thunk:
        def build() -> tuple[bool, _Factory]:
            checker = shared_checker()
            return kind.plaintext, lambda context: kind(context, checker)

        return build

    checkers: list[oauth.TokenChecker] = []

    def shared_checker() -> oauth.TokenChecker:
        if not checkers:  # OAUTHBEARER and XOAUTH2 share one JWKS cache
            jwks = JwksCache(
                auth.oauth_jwks, ttl=auth.oauth_jwks_ttl, ca_file=auth.oauth_jwks_ca_file
            )
            settings = oauth.OAuthSettings(
                issuer=auth.oauth_issuer,
                audience=auth.oauth_audience,
                algorithms=auth.oauth_algorithms,
                user_claims=auth.oauth_user_claims,
                strip_domain=auth.oauth_strip_domain,
                leeway=auth.oauth_leeway,
            )
            checkers.append(oauth.TokenChecker(settings, jwks))
        return checkers[0]

    def ntlm_factory() -> tuple[bool, _Factory]:
        names = ntlm.target_names(auth.ntlm_domain, auth.ntlm_server_name)
        settings = ntlm.NtlmSettings(names, allow_v1=auth.ntlm_allow_v1)
        return False, lambda context: ntlm.NtlmMechanism(context, settings)

    def gssapi_factory() -> tuple[bool, _Factory]:
        # python-gssapi is an optional extra (kerberos): imported only when GSSAPI is offered.
        from popbox.auth import gssapi  # noqa: PLC0415 - an optional dependency

        settings = gssapi.gssapi_settings(auth, config.data_dir)
        return False, lambda context: gssapi.GssapiMechanism(context, settings)

    return {
        PLAIN: lambda: (
            plain.PlainMechanism.plaintext,
            lambda context: plain.PlainMechanism(context, passwords),
        ),
        LOGIN: lambda: (
            LoginMechanism.plaintext,
            lambda context: LoginMechanism(context, passwords),
        ),
        SCRAM_SHA_256: scram_factory,
        OAUTHBEARER: bearer(oauth.OAuthBearerMechanism),
        XOAUTH2: bearer(oauth.XOAuth2Mechanism),
        NTLM: ntlm_factory,
        GSSAPI: gssapi_factory,
    }


_Thunk = Callable[[], tuple[bool, _Factory]]
