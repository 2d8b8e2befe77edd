"""What clients are told to connect to: Exchange's Internal/ExternalConnectionSettings.

Exchange's ``Set-PopSettings -InternalConnectionSettings`` / ``-ExternalConnectionSettings``
take ``<HostName>:<Port>:[<TLS | SSL>]`` entries (the ``ProtocolConnectionSettings`` type:
host name, port, an optional encryption type; blank means unencrypted).  They change
nothing on the wire: Exchange shows them to users (Outlook on the web's POP settings page)
so that clients are set up with the right name and port.  popbox keeps them as
``pop3.internal_connection_settings`` / ``pop3.external_connection_settings`` and shows
them in ``popbox config show`` and the admin API (``GET /api/v1/connection-settings``).

Exchange's internal default is ``<server FQDN>:995:SSL,<server FQDN>:110:TLS``; popbox's
is the same built from its own listeners (``pop3.tls_listen``: SSL, ``pop3.listen``: TLS,
as STLS is offered there), and the external default is blank, as Exchange's.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from popbox.config.checks import parse_address
from popbox.config.sections import ConfigError

if TYPE_CHECKING:
    from popbox.config.sections import Pop3Config

__all__ = ["ConnectionSetting", "advertised", "check_connection_settings", "parse_setting"]

Encryption = Literal["SSL", "TLS", ""]
_ENCRYPTIONS: dict[str, Encryption] = {"ssl": "SSL", "tls": "TLS", "": ""}


@dataclass(frozen=True, slots=True)
class ConnectionSetting:
    host: str
    port: int
    encryption: Encryption  # SSL: implicit TLS (995); TLS: STLS; "": unencrypted

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.encryption}"


def parse_setting(text: str, key: str) -> ConnectionSetting:
    """One ``host:port[:SSL|TLS]`` entry; ``ConfigError`` naming ``key`` when it is not."""
    parts = text.split(":")
    if len(parts) not in {2, 3}:
        raise ConfigError(f"{key}: {text!r} is not HOST:PORT or HOST:PORT:SSL|TLS")
    host, port_text = parts[0].strip(), parts[1].strip()
    encryption = _ENCRYPTIONS.get(parts[2].strip().lower() if len(parts) == 3 else "")
    if encryption is None:
        raise ConfigError(f"{key}: {text!r}: the encryption is SSL, TLS or nothing")
    if not host or any(c.isspace() or c in ",/" for c in host):
        raise ConfigError(f"{key}: {text!r}: {host!r} is not a host name")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: {text!r}: the port is a number from 1 to 65535")
    return ConnectionSetting(host, int(port_text), encryption)


def check_connection_settings(pop3: Pop3Config) -> None:
    for key in ("internal_connection_settings", "external_connection_settings"):
        for entry in getattr(pop3, key):
            parse_setting(entry, f"pop3.{key}")


def advertised(pop3: Pop3Config, fqdn: str | None = None) -> dict[str, list[ConnectionSetting]]:
    """The internal and external settings in force (the internal ones derived from the
    listeners when none are configured, with ``fqdn`` or this machine's name)."""
    internal = [
        parse_setting(entry, "pop3.internal_connection_settings")
        for entry in pop3.internal_connection_settings
    ]
    if not internal:
        host = fqdn or socket.getfqdn()
        ports: list[tuple[int, Encryption]] = [
            *((_port(a, "pop3.tls_listen"), "SSL") for a in pop3.tls_listen),
            *((_port(a, "pop3.listen"), "TLS") for a in pop3.listen),
        ]
        # Port 0 (ephemeral) is no address to give anybody.
        internal = [ConnectionSetting(host, p, e) for p, e in ports if p > 0]
    external = [
        parse_setting(entry, "pop3.external_connection_settings")
        for entry in pop3.external_connection_settings
    ]
    return {"internal": internal, "external": external}


def _port(address: str, key: str) -> int:
    return parse_address(address, key)[1]
