"""One pool slot's two LDAP connections and the two things popbox asks of them.

``LdapSession`` is used by one job at a time (``ldap_pool.py`` sees to that).  Its
``search`` connection is bound as the service account (or anonymous); its ``bind``
connection exists only to check user passwords by binding as the user's DN, so a
user's bind never changes what the searches are allowed to read.

Result codes the caller must tell apart come back as values (``BindResult``,
``SearchResult``); a server that answers with anything else (busy, unavailable, no
such base DN, a refused service bind) raises ``LdapProtocolError``, which the pool
treats like a dropped connection: a failed server.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from popbox.directory.ldap_connection import Endpoint, LdapConnection, LdapError
from popbox.ldapwire import messages
from popbox.ldapwire.filters import compile_filter

if TYPE_CHECKING:
    import ssl

    from popbox.config.ldap import LdapSettings

__all__ = [
    "BindResult",
    "Entry",
    "LdapProtocolError",
    "LdapSession",
    "SearchResult",
]

# RFC 4511 section 4.1.9 result codes.
SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
INVALID_CREDENTIALS = 49

_SCOPES = {"base": 0, "onelevel": 1, "subtree": 2}
_NO_ATTRIBUTES = ("1.1",)  # RFC 4511 section 4.5.1.8
_PING_FILTER = compile_filter("(objectClass=*)")


class LdapProtocolError(LdapError):
    """The server answered, but not with a result popbox can act on."""


@dataclass(frozen=True, slots=True)
class Entry:
    dn: str
    attributes: dict[str, tuple[str, ...]]  # names lower-cased; values as UTF-8 text


@dataclass(frozen=True, slots=True)
class SearchResult:
    entries: tuple[Entry, ...]
    truncated: bool  # more entries matched than were asked for


@dataclass(frozen=True, slots=True)
class BindResult:
    accepted: bool
    message: str  # the server's diagnostic message: AD puts its reason ("data 533") there


class LdapSession:
    """See the module docstring; made by ``open``."""

    __slots__ = ("_base_dn", "_scope", "_time_limit", "bind_connection", "search_connection")

    @classmethod
    async def open(cls, uri: str, settings: LdapSettings, context: ssl.SSLContext) -> LdapSession:
        """Connect both connections (StartTLS first where configured) and bind the
        search connection as the service account; each step within connect_timeout,
        so that a server that accepts and never answers costs no more than one that
        refuses."""
        endpoint = _endpoint(uri, settings)
        search = await LdapConnection.open(endpoint, context)
        try:
            bind = await LdapConnection.open(endpoint, context)
        except BaseException:
            search.close()
            raise
        session = cls(search, bind, settings)
        try:
            if settings.bind_dn:
                await session._bind_service_account(settings)
        except BaseException:
            session.close()
            raise
        return session

    def __init__(
        self, search: LdapConnection, bind: LdapConnection, settings: LdapSettings
    ) -> None:
        self.search_connection = search
        self.bind_connection = bind
        self._base_dn = settings.base_dn
        self._scope = _SCOPES[settings.scope]
        # Sent with each search, so that the server gives up when popbox does.
        self._time_limit = math.ceil(settings.timeout)

    async def _bind_service_account(self, settings: LdapSettings) -> None:
        async with asyncio.timeout(settings.connect_timeout):
            result = await self.search_connection.bind(settings.bind_dn, settings.bind_password)
        if result.code != SUCCESS:
            raise LdapProtocolError(
                f"the service account's bind was refused: {messages.describe(result)}"
            )

    @property
    def usable(self) -> bool:
        return self.search_connection.usable and self.bind_connection.usable

    async def search(self, search_filter: str, attributes: tuple[str, ...]) -> SearchResult:
        """Up to two entries under the base DN; ``truncated`` when more would match."""
        search = messages.Search(
            self._base_dn,
            self._scope,
            compile_filter(search_filter),  # the caller escaped the values (ldap_filter.py)
            attributes or _NO_ATTRIBUTES,
            size_limit=2,
            time_limit=self._time_limit,
        )
        result, replies = await self.search_connection.search(search)
        if result.code not in (SUCCESS, SIZE_LIMIT_EXCEEDED):
            raise LdapProtocolError(f"search failed: {messages.describe(result)}")
        # Active Directory adds continuation references (other naming contexts);
        # referrals are not followed, so the connection does not keep them.
        entries = tuple(Entry(reply.dn, _texts(reply.attributes)) for reply in replies)
        return SearchResult(
            entries, truncated=result.code == SIZE_LIMIT_EXCEEDED or len(entries) > 1
        )

    async def check_password(self, dn: str, password: str) -> BindResult:
        """A simple bind as ``dn``; refused (49) is an answer, anything else is not."""
        result = await self.bind_connection.bind(dn, password)
        if result.code == SUCCESS:
            return BindResult(accepted=True, message="")
        if result.code == INVALID_CREDENTIALS:
            return BindResult(accepted=False, message=result.message)
        raise LdapProtocolError(f"bind failed: {messages.describe(result)}")

    async def ping(self) -> None:
        """One request the server must answer (any result will do): a base-scope read
        of ``base_dn``, which every directory serves cheaply."""
        base = messages.Search(self._base_dn, 0, _PING_FILTER, _NO_ATTRIBUTES, 1, self._time_limit)
        await self.search_connection.search(base)

    def close(self) -> None:
        self.search_connection.close()
        self.bind_connection.close()


def _endpoint(uri: str, settings: LdapSettings) -> Endpoint:
    parts = urlsplit(uri)  # checked by the config: ldap[s]://host[:port]
    implicit_tls = parts.scheme == "ldaps"
    return Endpoint(
        host=parts.hostname or "",
        port=parts.port or (636 if implicit_tls else 389),
        implicit_tls=implicit_tls,
        starttls=settings.starttls and not implicit_tls,
        connect_timeout=settings.connect_timeout,
    )


def _texts(raw: dict[str, tuple[bytes, ...]]) -> dict[str, tuple[str, ...]]:
    # Values are octets (RFC 4511); one that is not UTF-8 is left out, so a mailbox or
    # quota attribute holding only garbage reads as missing rather than as mojibake.
    attributes = {}
    for name, values in raw.items():
        texts = []
        for value in values:
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                continue
        attributes[name] = tuple(texts)
    return attributes
