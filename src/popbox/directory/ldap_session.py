"""One pool slot's two LDAP connections and the two things popbox asks of them.

``LdapSession`` is used by one worker thread at a time (``ldap_pool.py`` sees to that).
Its ``search`` connection is bound as the service account (or anonymous); its ``bind``
connection exists only to check user passwords by binding as the user's DN, so a
user's bind never changes what the searches are allowed to read.

Result codes the caller must tell apart come back as values (``BindResult``,
``SearchResult``); a server that answers with anything else (busy, unavailable, no
such base DN, a refused service bind) raises ``LdapProtocolError``, which the pool
treats like a dropped connection: a failed server.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ldap3

if TYPE_CHECKING:
    from popbox.config.ldap import LdapSettings

__all__ = [
    "BindResult",
    "Entry",
    "LdapProtocolError",
    "LdapSession",
    "SearchResult",
    "VerifiedTls",
]

# RFC 4511 section 4.1.9 result codes.
SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
INVALID_CREDENTIALS = 49

_SCOPES = {"subtree": ldap3.SUBTREE, "onelevel": ldap3.LEVEL, "base": ldap3.BASE}


class LdapProtocolError(Exception):
    """The server answered, but not with a result popbox can act on."""


class VerifiedTls(ldap3.Tls):
    """ldap3's TLS settings, with the handshake done by our ``ssl.SSLContext``.

    ldap3 2.9 turns the context's ``check_hostname`` off and matches the certificate's
    names itself with ``ssl.match_hostname`` (deprecated since Python 3.7, removed in
    3.12, where ldap3 falls back to a copy of it).  Handing OpenSSL the host name
    instead checks it the way every other TLS client in popbox does, IP addresses
    included, under the context's TLS 1.2 minimum.  ``wrap_socket`` is the one method
    ldap3 calls for both ldaps:// and StartTLS.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:  # noqa: FBT001, FBT002 - ldap3's signature
        # The handshake is part of opening a connection: connect_timeout bounds it
        # (ldap3 would give it the receive timeout of a whole operation).
        plain = connection.socket
        operation_timeout = plain.gettimeout()
        plain.settimeout(connection.server.connect_timeout)
        wrapped = self._context.wrap_socket(
            plain, server_hostname=connection.server.host, do_handshake_on_connect=do_handshake
        )
        wrapped.settimeout(operation_timeout)
        connection.socket = wrapped


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


@dataclass(slots=True)
class LdapSession:
    search_connection: ldap3.Connection
    bind_connection: ldap3.Connection
    base_dn: str
    scope: str

    @classmethod
    def open(cls, server: ldap3.Server, settings: LdapSettings) -> LdapSession:
        """Connect both connections (StartTLS first where configured) and bind the
        search connection as the service account."""
        search = _connect(server, settings)
        try:
            bind = _connect(server, settings)
        except BaseException:
            discard(search)
            raise
        session = cls(search, bind, settings.base_dn, _SCOPES[settings.scope])
        if settings.bind_dn:
            search.user, search.password = settings.bind_dn, settings.bind_password
            search.authentication = ldap3.SIMPLE
        try:
            # The service bind still belongs to opening: connect_timeout, so that a
            # server that accepts and never answers costs no more than one that refuses.
            search.socket.settimeout(settings.connect_timeout)
            bound = search.bind(read_server_info=False)
            for connection in (search, bind):
                connection.socket.settimeout(settings.timeout)
        except BaseException:
            session.close()
            raise
        if not bound:
            session.close()
            raise LdapProtocolError(f"the service account's bind was refused: {_why(search)}")
        return session

    def search(self, search_filter: str, attributes: tuple[str, ...]) -> SearchResult:
        """Up to two entries under the base DN; ``truncated`` when more would match."""
        self.search_connection.search(
            self.base_dn,
            search_filter,
            search_scope=self.scope,  # type: ignore[arg-type] # one of ldap3's scope constants
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=list(attributes) or [ldap3.NO_ATTRIBUTES],
            size_limit=2,
            auto_escape=False,  # the caller escaped the values (ldap_filter.py)
        )
        code = self.search_connection.result["result"]
        if code not in (SUCCESS, SIZE_LIMIT_EXCEEDED):
            raise LdapProtocolError(f"search failed: {_why(self.search_connection)}")
        entries = tuple(
            _entry(item)
            for item in self.search_connection.response or ()
            # Active Directory adds continuation references (other naming contexts);
            # referrals are not followed, so they are not entries either.
            if item.get("type") == "searchResEntry"
        )
        return SearchResult(entries, truncated=code == SIZE_LIMIT_EXCEEDED or len(entries) > 1)

    def check_password(self, dn: str, password: str) -> BindResult:
        """A simple bind as ``dn``; refused (49) is an answer, anything else is not."""
        connection = self.bind_connection
        connection.rebind(user=dn, password=password, read_server_info=False)
        code = connection.result["result"]
        if code == SUCCESS:
            return BindResult(accepted=True, message="")
        if code == INVALID_CREDENTIALS:
            return BindResult(accepted=False, message=str(connection.result.get("message", "")))
        raise LdapProtocolError(f"bind failed: {_why(connection)}")

    def ping(self) -> None:
        """One request the server must answer (any result will do): a base-scope read
        of ``base_dn``, which every directory serves cheaply."""
        self.search_connection.search(
            self.base_dn,
            "(objectClass=*)",
            search_scope=ldap3.BASE,
            attributes=[ldap3.NO_ATTRIBUTES],
        )

    def close(self) -> None:
        for connection in (self.search_connection, self.bind_connection):
            if not connection.closed:
                connection.unbind()
            discard(connection)


def _connect(server: ldap3.Server, settings: LdapSettings) -> ldap3.Connection:
    connection = ldap3.Connection(
        server,
        client_strategy=ldap3.SYNC,
        # ldap3 sets SO_RCVTIMEO from this with struct.pack("LL", ...), whole seconds
        # only; ``open`` sets the socket's own (exact) timeout once it is connected.
        receive_timeout=math.ceil(settings.timeout),
        raise_exceptions=False,
        auto_referrals=False,
        read_only=True,
        check_names=False,
        return_empty_attributes=False,
        auto_escape=False,
    )
    try:
        connection.open(read_server_info=False)
        refused = (
            settings.starttls
            and not server.ssl
            and not connection.start_tls(read_server_info=False)
        )
    except BaseException:
        discard(connection)
        raise
    if refused:
        discard(connection)
        raise LdapProtocolError(f"StartTLS was refused: {_why(connection)}")
    return connection


def discard(connection: ldap3.Connection) -> None:
    """Close ``connection``'s socket whatever state a failure left it in (ldap3 does
    not close it when opening fails half-way)."""
    sock = connection.socket
    with contextlib.suppress(Exception):
        connection.strategy.close()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _entry(item: dict[str, object]) -> Entry:
    attributes: dict[str, tuple[str, ...]] = {}
    raw = item.get("raw_attributes")
    if isinstance(raw, Mapping):  # ldap3's CaseInsensitiveDict
        for name, values in raw.items():
            attributes[str(name).lower()] = tuple(_texts(values))
    return Entry(str(item.get("dn", "")), attributes)


def _texts(values: object) -> list[str]:
    # Values are octets (RFC 4511); one that is not UTF-8 is left out, so a mailbox or
    # quota attribute holding only garbage reads as missing rather than as mojibake.
    texts = []
    for value in values if isinstance(values, list | tuple) else ():
        try:
            texts.append(bytes(value).decode("utf-8"))
        except (UnicodeDecodeError, TypeError):
            continue
    return texts


def _why(connection: ldap3.Connection) -> str:
    result = connection.result or {}
    message = result.get("message") or ""
    return f"{result.get('description', 'no result')} ({result.get('result', '?')}) {message}"
