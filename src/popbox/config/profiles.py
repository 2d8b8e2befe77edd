"""The ``compat`` profiles: the defaults each one changes, and the ranges it enforces.

A profile changes defaults only: a key set explicitly in the file wins.  Its wire face
(greeting, CAPA, texts) is ``popbox.protocol.profiles``; this module holds what the
configuration sees.  Defaults cite Set-PopSettings (MicrosoftDocs office-docs-powershell,
``exchange/exchange-ps/exchange/Set-PopSettings.md``) and the seed clauses.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Final, Literal, Protocol

from popbox.protocol.mechanisms import GSSAPI, NTLM, PLAIN, XOAUTH2

__all__ = [
    "COMPAT_NAMES",
    "DEFAULT_COMPAT",
    "EXCHANGE_TIMEOUT_RANGE",
    "Compat",
    "check_profile",
    "is_exchange",
    "profile_defaults",
]

Compat = Literal[
    "modern", "exchange2007", "exchange2010", "exchange2013", "exchange-online", "rfc1939"
]
COMPAT_NAMES: Final = (
    "modern",
    "exchange2007",
    "exchange2010",
    "exchange2013",
    "exchange-online",
    "rfc1939",
)
# Exchange's semantics plus every RFC extension popbox has.  Before the Exchange
# profiles became faithful on the wire this behaviour was called "exchange2013".
DEFAULT_COMPAT: Final = "modern"

# Set-PopSettings: AuthenticatedConnectionTimeout and PreAuthenticatedConnectionTimeout
# take 00:00:30 to 1:00:00.
EXCHANGE_TIMEOUT_RANGE: Final = (30.0, 3600.0)

_EXCHANGE_POP3: Final[dict[str, Any]] = {
    "banner": "The Microsoft Exchange POP3 service is ready.",  # Set-PopSettings -Banner
    "exact_rfc822_size": False,  # EnableExactRFC822Size $false (2.1.4, 2.1.5)
}
_EXCHANGE_SERVER: Final[dict[str, Any]] = {
    "max_sessions_per_user": 16,  # Set-PopSettings MaxConnectionsPerUser
}


def _on_premises_mechanisms() -> tuple[str, ...]:
    # jstedfast/MailKit issue 119 lists "SASL GSSAPI PLAIN" with NTLM switched off; the
    # decompiled CAPA code (exchange-wire.md) orders them NTLM GSSAPI PLAIN.  GSSAPI needs
    # the optional gssapi package: without it the default leaves GSSAPI out rather than
    # refuse to start.
    if importlib.util.find_spec("gssapi") is None:
        return (NTLM, PLAIN)
    return (NTLM, GSSAPI, PLAIN)


def _online_mechanisms(raw_auth: dict[str, Any]) -> tuple[str, ...]:
    # kisli/vmime issue 267 shows "SASL PLAIN XOAUTH2"; simonrob/email-oauth2-proxy issue
    # 162 (2023) shows "SASL PLAIN".  XOAUTH2 needs a token issuer, so it is a default
    # only once [auth] names one.
    return (PLAIN, XOAUTH2) if raw_auth.get("oauth_issuer") else (PLAIN,)


def is_exchange(compat: str) -> bool:
    return compat.startswith("exchange")


def profile_defaults(compat: str, raw_auth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Section name -> the defaults ``compat`` sets there."""
    if compat == "rfc1939":  # RFC 1939 s8 locking, single-space separators (2.1.1)
        return {"pop3": {"lock_mailbox": True, "single_space_separators": True}}
    if not is_exchange(compat):
        return {}
    pop3 = dict(_EXCHANGE_POP3)
    if compat == "exchange2007":
        pop3["max_command_size"] = 47  # E0006: Exchange 2007's shipped default
    mechanisms = (
        _online_mechanisms(raw_auth) if compat == "exchange-online" else _on_premises_mechanisms()
    )
    auth = {"mechanisms": list(mechanisms)}  # as TOML gives a list
    return {"pop3": pop3, "server": dict(_EXCHANGE_SERVER), "auth": auth}


class _Timeouts(Protocol):
    """The part of ``[pop3]`` (``config/sections.py``, which imports this module) checked."""

    @property
    def unauthenticated_timeout(self) -> float: ...
    @property
    def authenticated_timeout(self) -> float: ...


def check_profile(compat: str, pop3: _Timeouts) -> str | None:
    """What breaks a range an Exchange profile enforces (Set-PopSettings' valid values)."""
    if not is_exchange(compat):
        return None
    low, high = EXCHANGE_TIMEOUT_RANGE
    for key in ("unauthenticated_timeout", "authenticated_timeout"):
        value = getattr(pop3, key)
        if not low <= value <= high:
            return (
                f"pop3.{key}: {value:g} is outside {low:g}..{high:g} seconds, the range "
                f'Exchange allows (compat = "{compat}")'
            )
    return None
