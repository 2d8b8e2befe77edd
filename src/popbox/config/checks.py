"""Cross-field and range checks of each section, run once at load."""

from __future__ import annotations

import importlib.util
import ipaddress
import math

from popbox.config.sections import (
    MAX_COMMAND_SIZE,
    MIN_COMMAND_SIZE,
    AdminConfig,
    AuthConfig,
    Config,
    ConfigError,
    Pop3Config,
    ProtocolLogConfig,
    ServerConfig,
)
from popbox.protocol.mechanisms import GSSAPI, MECHANISMS, OAUTH_MECHANISMS

__all__ = [
    "check_auth",
    "check_mail_in",
    "check_pop3",
    "check_protocol_log",
    "check_server",
    "parse_address",
]


def parse_address(
    address: str, key: str = "listen", *, allow_unix: bool = False
) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` (port 0: ephemeral); ``unix:/path`` gives (path, -1)."""
    if address.startswith("unix:"):
        if not allow_unix or len(address) <= len("unix:"):
            raise ConfigError(f"{key}: {address!r} is not a valid address here")
        return address[len("unix:") :], -1
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise ConfigError(f'{key}: {address!r} must look like "host:port"')
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{key}: port {port} in {address!r} is out of range 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{key}: {address!r} has an invalid IPv6 address") from None
    return host, port


def check_admin(admin: AdminConfig) -> None:
    """Every address parses; one off the loopback interface needs ``admin.tls = true``.

    The API carries tokens and the console carries passwords and session cookies: over
    plain HTTP anyone on the path could take them.  A host name is not resolved here, so
    only "localhost" and loopback IP addresses count as loopback.
    """
    for address in admin.listen:
        host, _ = parse_address(address, "admin.listen")
        if not admin.tls and not _is_loopback(host):
            raise ConfigError(
                f"admin.listen: {address!r} is not a loopback address, and the admin API "
                "would carry tokens and passwords in clear text: set admin.tls = true"
            )
    _check_duration("admin.session_lifetime", admin.session_lifetime)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_pop3(pop3: Pop3Config) -> None:
    if not MIN_COMMAND_SIZE <= pop3.max_command_size <= MAX_COMMAND_SIZE:
        raise ConfigError(
            f"pop3.max_command_size: {pop3.max_command_size} is outside the allowed range "
            f"{MIN_COMMAND_SIZE}..{MAX_COMMAND_SIZE} (E0006)"
        )
    for key in ("unauthenticated_timeout", "authenticated_timeout", "lock_lease"):
        _check_duration(f"pop3.{key}", getattr(pop3, key))
    if pop3.tls_handshake_timeout is not None:
        _check_duration("pop3.tls_handshake_timeout", pop3.tls_handshake_timeout)
    for key in ("max_bad_commands", "max_auth_failures", "sasl_line_max"):
        if getattr(pop3, key) < 1:
            raise ConfigError(f"pop3.{key}: must be at least 1")
    for key in ("auth_failure_delay", "shutdown_grace"):
        if getattr(pop3, key) < 0:
            raise ConfigError(f"pop3.{key}: must not be negative")
    if len(pop3.banner.encode("utf-8")) > 400 or any(c in pop3.banner for c in "\r\n"):
        raise ConfigError("pop3.banner: must be one line of at most 400 octets")


def _check_duration(key: str, seconds: float) -> None:
    # TOML allows inf and nan; neither is a timeout a timer can run.
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: must be a number of seconds greater than 0, not {seconds!r}")


def check_server(server: ServerConfig) -> None:
    for key in (
        "workers",
        "max_connections",
        "max_connections_per_ip",
        "max_sessions_per_user",
        "memory_budget",
    ):
        if getattr(server, key) < 0:
            raise ConfigError(f"server.{key}: must not be negative (0 means {_ZERO[key]})")
    if server.proxy_header_timeout <= 0:
        raise ConfigError("server.proxy_header_timeout: must be greater than 0")
    for network in server.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"server.trusted_proxies: {network!r} is not an address or network (CIDR)"
            ) from None
    if server.metrics_listen:
        parse_address(server.metrics_listen, "server.metrics_listen")


_ZERO = {
    "workers": "one per CPU core",
    "memory_budget": "no limit",
    "max_connections": "no limit",
    "max_connections_per_ip": "no limit",
    "max_sessions_per_user": "no limit",
}


def check_mail_in(config: Config) -> None:
    lmtp, quota, retention = config.lmtp, config.quota, config.retention
    if lmtp.max_message_size < 1 or lmtp.timeout <= 0:
        raise ConfigError("lmtp.max_message_size and lmtp.timeout: must be greater than 0")
    if lmtp.dedup_window < 0:
        raise ConfigError("lmtp.dedup_window: must not be negative (0 turns it off)")
    if lmtp.spool_threshold < 0:
        raise ConfigError("lmtp.spool_threshold: must not be negative")
    if any(c.isspace() for c in lmtp.hostname):
        raise ConfigError(f"lmtp.hostname: {lmtp.hostname!r} must not contain white space")
    if quota.default_quota is not None and quota.default_quota < 0:
        raise ConfigError("quota.default_quota: must not be negative")
    if not 1 <= quota.warning_percent <= 100:
        raise ConfigError("quota.warning_percent: must be in 1..100")
    for key in ("retrieved_days", "unretrieved_days"):
        days = getattr(retention, key)
        if days is not None and days < 0:
            raise ConfigError(f"retention.{key}: must not be negative")
    if retention.interval <= 0:
        raise ConfigError("retention.interval: must be greater than 0")


def check_protocol_log(log: ProtocolLogConfig) -> None:
    for key in ("per_file_size", "max_total_size", "max_age_days"):
        if getattr(log, key) < 0:
            raise ConfigError(f"protocol_log.{key}: must not be negative (0 means no limit)")
    if 0 < log.max_total_size < log.per_file_size:
        raise ConfigError("protocol_log.max_total_size: must be at least per_file_size")


def _check_argon2(auth: AuthConfig) -> None:
    # RFC 9106 s3.1 bounds, as Argon2Params checks them, named by key.
    if auth.argon2_time_cost < 1 or auth.argon2_parallelism < 1:
        raise ConfigError("auth.argon2_time_cost and auth.argon2_parallelism: must be at least 1")
    if auth.argon2_memory_kib < 8 * auth.argon2_parallelism:
        raise ConfigError("auth.argon2_memory_kib: must be at least 8 x argon2_parallelism")


def check_auth(auth: AuthConfig) -> None:
    for name in auth.mechanisms:
        if name not in MECHANISMS:
            raise ConfigError(f"auth.mechanisms: {name!r} is not one of {', '.join(MECHANISMS)}")
    if len(set(auth.mechanisms)) != len(auth.mechanisms):
        raise ConfigError("auth.mechanisms: a mechanism is listed twice")
    if auth.scram_iterations < 4096:
        raise ConfigError("auth.scram_iterations: must be at least 4096 (RFC 7677 s4)")
    _check_argon2(auth)
    for key in ("oauth_jwks_ttl", "failure_half_life", "lockout_duration", "max_tracked"):
        if getattr(auth, key) <= 0:
            raise ConfigError(f"auth.{key}: must be greater than 0")
    for key in (
        "oauth_leeway",
        "failure_delay_max",
        "ip_lockout_failures",
        "user_lockout_failures",
    ):
        if getattr(auth, key) < 0:
            raise ConfigError(f"auth.{key}: must not be negative")
    _check_oauth(auth)


def _check_oauth(auth: AuthConfig) -> None:
    if OAUTH_MECHANISMS.intersection(auth.mechanisms):
        for key in ("oauth_issuer", "oauth_audience", "oauth_jwks"):
            if not getattr(auth, key):
                raise ConfigError(f"auth.{key}: required when OAUTHBEARER or XOAUTH2 is offered")
        if not auth.oauth_user_claims:
            raise ConfigError("auth.oauth_user_claims: name at least one claim")
        if not auth.oauth_algorithms:
            raise ConfigError("auth.oauth_algorithms: name at least one algorithm")
    if "://" in auth.oauth_jwks and not auth.oauth_jwks.startswith("https://"):
        raise ConfigError("auth.oauth_jwks: a URL must use https://")
    _check_kerberos(auth)


def _check_kerberos(auth: AuthConfig) -> None:
    for entry in auth.gssapi_principal_map:
        principal, _, mailbox = entry.partition("=")
        if not principal.strip() or not mailbox.strip():
            raise ConfigError(
                f"auth.gssapi_principal_map: {entry!r} is not of the form 'principal=mailbox'"
            )
    service, _, host = auth.gssapi_service_name.partition("@")
    if auth.gssapi_service_name and (not service or not host):
        raise ConfigError("auth.gssapi_service_name: must be of the form service@host")
    if GSSAPI in auth.mechanisms and importlib.util.find_spec("gssapi") is None:
        raise ConfigError(
            "auth.mechanisms: GSSAPI needs the gssapi package (pip install 'popbox[kerberos]')"
        )
