"""Login names: what the client typed becomes the name the directories look up.

Rules, in order (``[names]``):

1. ``DOMAIN\\user`` (Windows' down-level logon name) becomes ``user`` in the DNS domain
   ``windows_domains`` gives for ``DOMAIN``, else in ``domain`` lower-cased.
2. ``user@domain`` (also ``user@REALM``, a Kerberos realm is a domain in capitals) splits
   at the last ``@``; the domain is always lower-cased (RFC 5321 s2.4: domains are
   case-insensitive).  A bare name gets ``default_domain`` when one is set.
3. ``lowercase`` folds the local part too (RFC 5321 lets servers treat it as
   case-sensitive, so it is a choice, off by default).
4. ``aliases`` maps the resulting name to another user's name.

A name that cannot be one (empty local part, several backslashes, an empty domain)
is kept as it is, so that it is looked up, costs what an unknown user costs, and fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.directory.base import LoginName

if TYPE_CHECKING:
    from popbox.config.directory_sections import NamesConfig

__all__ = ["LoginNames"]


class LoginNames:
    """The ``[names]`` rules, built once per server."""

    def __init__(self, config: NamesConfig) -> None:
        self._config = config
        self._windows = dict(config.windows_domains)
        self._aliases = dict(config.aliases)

    def parse(self, raw: str) -> LoginName:
        """The normalised login name of ``raw`` (never raises)."""
        local, domain = self._split(raw)
        if self._config.lowercase:
            local = local.lower()
        user = f"{local}@{domain}" if domain else local
        alias = self._aliases.get(user)
        if alias is not None:
            local, _, domain = alias.rpartition("@") if "@" in alias else (alias, "", "")
            domain = domain.lower()
            user = f"{local}@{domain}" if domain else local
        return LoginName(raw=raw, user=user, local=local, domain=domain)

    def _split(self, raw: str) -> tuple[str, str]:
        netbios, backslash, rest = raw.partition("\\")
        if backslash and netbios and rest and "\\" not in rest and "@" not in rest:
            return rest, self._windows.get(netbios.upper(), netbios.lower())
        local, at, domain = raw.rpartition("@")
        if at and local and domain:
            return local, domain.lower()
        return raw, self._config.default_domain if not at else ""
