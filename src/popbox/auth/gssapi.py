"""AUTH GSSAPI: Kerberos V5 logins (RFC 4752 over the RFC 4121 mechanism) with python-gssapi.

Theory of operation: the client's first token (the initial response, or the answer to an
empty "+ " challenge) is a Kerberos AP-REQ.  The server accepts it with the service key
from its keytab; when the context completes the server may have one more token for the
client (the AP-REP of mutual authentication), which the client answers with an empty
response.  Then comes the security layer negotiation of RFC 4752 section 3.1: the server
sends a 4-octet message wrapped with integrity only (bit mask of offered layers: 1 = no
security layer, and a maximum buffer size), the client answers with the same shape,
wrapped, naming the layer it chose and optionally an authorization identity.  POP3 gets
no security layer from GSSAPI (TLS is the way to protect the session), so only "none" is
offered and accepted.

The client principal becomes a mailbox by ``auth.gssapi_principal_map`` first, else by
dropping the realm when it is the service's own realm (``alice@EXAMPLE.COM`` → ``alice``);
principals of other realms or with an instance (``alice/admin``) need a map entry.

Replays: MIT Kerberos refuses an authenticator it has seen before within the clock skew
only if the acceptor has a replay cache.  The credential store names one explicitly
(``file2:<data_dir>/krb5.rcache`` by default), so the check is on whatever
KRB5RCACHETYPE the process inherited, is shared by all worker processes (the file is
locked per update), and survives restarts.

python-gssapi is blocking and reads the keytab and the replay cache file, so every call
that touches them runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

import gssapi
from gssapi.raw.misc import GSSError

from popbox.auth.base import Challenge, Failure, Success
from popbox.protocol.mechanisms import GSSAPI

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from popbox.auth.base import AuthContext, Step
    from popbox.config import AuthConfig

__all__ = ["GssapiMechanism", "GssapiSettings", "gssapi_settings", "mailbox_for"]

# RFC 4752 s3.1: security layer bit masks.
LAYER_NONE: Final = 0x01
# No layer but "none" is offered, so the size the server can receive is moot; RFC 4752
# asks a party that offers no layer to send 0.
SERVER_LAYERS: Final = bytes([LAYER_NONE, 0, 0, 0])


@dataclass(frozen=True, slots=True)
class GssapiSettings:
    service_name: str  # host-based service name, "pop@mail.example.com"
    keytab: str = ""  # empty: the default keytab ($KRB5_KTNAME or the system one)
    replay_cache: str = ""  # MIT replay cache name ("file2:/path"); empty: the default
    strip_realm: bool = True
    principal_map: Mapping[str, str] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()  # may name another mailbox as authzid

    def credential_store(self) -> dict[bytes | str, bytes | str]:
        """gss_acquire_cred_from's store: where the keys and the replay cache live."""
        store: dict[bytes | str, bytes | str] = {}
        if self.keytab:
            store[b"keytab"] = self.keytab.encode()
        if self.replay_cache:
            store[b"rcache"] = self.replay_cache.encode()
        return store


def gssapi_settings(auth: AuthConfig, data_dir: Path) -> GssapiSettings:
    """The settings ``[auth]`` describes; the replay cache defaults into ``data_dir``."""
    mapping = {}
    for entry in auth.gssapi_principal_map:
        principal, _, mailbox = entry.partition("=")
        mapping[principal.strip()] = mailbox.strip()
    return GssapiSettings(
        service_name=auth.gssapi_service_name or f"pop@{socket.gethostname()}",
        keytab=auth.gssapi_keytab,
        replay_cache=auth.gssapi_replay_cache or f"file2:{data_dir / 'krb5.rcache'}",
        strip_realm=auth.gssapi_strip_realm,
        principal_map=mapping,
        admins=frozenset(auth.admins),
    )


def mailbox_for(principal: str, service_realm: str, settings: GssapiSettings) -> str | None:
    """The mailbox ``principal`` logs in to, or None when nothing maps it."""
    mapped = settings.principal_map.get(principal)
    if mapped is not None:
        return mapped
    name, at, realm = principal.rpartition("@")
    if settings.strip_realm and at and realm == service_realm and name and "/" not in name:
        return name
    return None


class _Phase(enum.Enum):
    ACCEPTING = "accepting"  # waiting for (more) context tokens
    AWAIT_EMPTY = "await_empty"  # sent the final context token; the client answers ""
    LAYER = "layer"  # sent the wrapped layer offer; waiting for the client's choice
    DONE = "done"


class GssapiMechanism:
    name: ClassVar[str] = GSSAPI
    plaintext: ClassVar[bool] = False  # Kerberos tickets, never the password

    def __init__(self, context: AuthContext, settings: GssapiSettings) -> None:
        self._context = context
        self._settings = settings
        self._phase = _Phase.ACCEPTING
        self._security: gssapi.SecurityContext | None = None
        self._principal = ""
        self._service_realm = ""

    async def start(self, initial: bytes | None) -> Step:
        if not initial:
            return Challenge(b"")  # RFC 4752 s3.1: the client starts; ask for its token
        return await self.step(initial)

    async def step(self, response: bytes) -> Step:
        phase = self._phase
        self._phase = _Phase.DONE  # until a step below says otherwise
        try:
            if phase is _Phase.ACCEPTING:
                return await asyncio.to_thread(self._accept, response)
            if phase is _Phase.AWAIT_EMPTY:
                if response:
                    return Failure("GSSAPI: expected an empty response after the context")
                return self._offer_layers()
            if phase is _Phase.LAYER:
                return await self._choose_layer(response)
        except GSSError as exc:
            # Replays, bad tickets, wrong keys, clock skew: the reason is for the log.
            return Failure(f"GSSAPI: {exc.gen_message()}", self._principal or None)
        return Failure("GSSAPI exchange already finished", self._principal or None)

    def _accept(self, token: bytes) -> Step:
        """Runs in a worker thread: reads the keytab and updates the replay cache."""
        if self._security is None:
            name = gssapi.Name(self._settings.service_name, gssapi.NameType.hostbased_service)
            store = self._settings.credential_store()
            credentials = gssapi.Credentials(name=name, usage="accept", store=store or None)
            self._security = gssapi.SecurityContext(creds=credentials, usage="accept")
        security = self._security
        output = security.step(token)
        # python-gssapi returns the error token of a failed accept (a KRB-ERROR, e.g. for
        # a replay) and raises the error only on the next use of the context: ask now.
        if not security.complete:
            self._phase = _Phase.ACCEPTING
            return Challenge(output or b"")
        self._principal = str(security.initiator_name)
        self._service_realm = str(security.target_name).rpartition("@")[2]
        if output:
            self._phase = _Phase.AWAIT_EMPTY
            return Challenge(output)
        return self._offer_layers()

    def _offer_layers(self) -> Step:
        assert self._security is not None
        wrapped = self._security.wrap(SERVER_LAYERS, encrypt=False).message
        self._phase = _Phase.LAYER
        return Challenge(wrapped)

    async def _choose_layer(self, response: bytes) -> Step:
        assert self._security is not None
        principal = self._principal
        data = self._security.unwrap(response).message
        if len(data) < 4 or data[0] != LAYER_NONE:
            return Failure("GSSAPI: the client chose a security layer not offered", principal)
        try:
            authzid = data[4:].decode("utf-8")
        except UnicodeDecodeError:
            return Failure("GSSAPI: the authorization identity is not UTF-8", principal)
        mailbox = mailbox_for(principal, self._service_realm, self._settings)
        if mailbox is None:
            return Failure(f"GSSAPI: no mailbox for principal {principal}", principal)
        target = authzid or mailbox
        if target != mailbox and mailbox not in self._settings.admins:
            return Failure(f"GSSAPI: {principal} may not log in as {authzid}", principal)
        record = await self._context.store.get_user(target)
        if record is None:
            return Failure(f"GSSAPI: no mailbox {target}", principal)
        return Success(record.name)
