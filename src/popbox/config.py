"""Typed, frozen configuration loaded from one TOML file and validated at load.

Every setting has a default, so an empty file (or none at all) is a valid configuration.
A wrong key or value raises ``ConfigError`` whose message names the TOML key path.  The
``compat`` profile changes the documented Exchange variances together (DESIGN.md
section 2); any key set explicitly in the file still wins over the profile.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from popbox.auth.registry import DEFAULT_MECHANISMS, GSSAPI, MECHANISMS, OAUTH_MECHANISMS

__all__ = [
    "COMPAT_PROFILES",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LmtpConfig",
    "Pop3Config",
    "QuotaConfig",
    "RetentionConfig",
    "ServerConfig",
    "StorageConfig",
    "TlsConfig",
    "default_config_path",
    "dump",
    "from_mapping",
    "load",
    "parse_address",
    "warnings",
]

LoginType = Literal["plaintext_login", "plaintext_authentication", "secure_login"]
Compat = Literal["exchange2013", "exchange2007", "rfc1939"]
Backend = Literal["sqlite", "postgresql"]
OverQuota = Literal["temporary", "permanent"]

MIN_COMMAND_SIZE = 40  # E0006: Exchange's allowed range is 40..1024 octets
MAX_COMMAND_SIZE = 1024
RFC2449_MIN_COMMAND_SIZE = 255  # RFC 2449 section 4, once CAPA is offered

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A configuration problem; the message names the key or file at fault."""


@dataclass(frozen=True, slots=True)
class Pop3Config:
    listen: tuple[str, ...] = ("127.0.0.1:110",)  # E0001
    tls_listen: tuple[str, ...] = ("127.0.0.1:995",)  # E0001
    banner: str = "popbox POP3 server ready"
    max_command_size: int = 512  # octets incl. CRLF (2.1.2, E0006)
    single_space_separators: bool = False  # 2.1.1: Exchange accepts runs of SP/TAB
    unauthenticated_timeout: float = 60.0  # V0002
    authenticated_timeout: float = 1800.0  # V0002
    login_type: LoginType = "secure_login"  # V0010
    lock_mailbox: bool = False  # 2.1.3 / C0004: snapshot, no exclusive lock
    lock_lease: float = 300.0  # seconds a maildrop lock survives its holder's silence
    exact_rfc822_size: bool = True  # 2.1.4 / 2.1.5
    sasl_line_max: int = 65536  # RFC 5034: SASL responses are not bound by command size
    max_bad_commands: int = 20  # C0005: close after this many -ERR for bad input
    max_auth_failures: int = 3  # C0005: close after this many failed logins
    auth_failure_delay: float = 1.0  # seconds before any failed login is answered
    shutdown_grace: float = 30.0  # seconds SIGTERM lets sessions finish before closing them


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str = ""  # empty: a self-signed certificate generated in data_dir
    key_file: str = ""


@dataclass(frozen=True, slots=True)
class LmtpConfig:
    listen: tuple[str, ...] = ("127.0.0.1:24",)
    hostname: str = ""  # in the greeting and Received headers; empty: this host's name
    max_message_size: int = 50 * 1024 * 1024  # octets, announced as SIZE; larger: 552 5.3.4
    over_quota: OverQuota = "temporary"  # 452 4.2.2 (the MTA retries) or 552 5.2.2 (bounce)
    timeout: float = 300.0  # seconds an LMTP client may stay silent


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    default_quota: int | None = None  # octets per mailbox unless the user has one (E0003)
    warning_percent: int = 90  # E0004: crossing this share of the quota sends one warning


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    retrieved_days: int | None = None  # E0005: days kept after first retrieval; None: ever
    unretrieved_days: int | None = None  # days a never-retrieved message is kept
    interval: float = 3600.0  # seconds between retention sweeps in `popbox serve`


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: Backend = "sqlite"
    dsn: str = ""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """SASL mechanisms, password verifiers, OAuth token checks and brute-force limits."""

    mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS  # offered, in CAPA order
    admins: tuple[str, ...] = ()  # may log in as another user (PLAIN authzid, RFC 4616)
    secret_file: str = ""  # empty: data_dir/auth-secret, generated; keys SCRAM's fake salts
    scram_iterations: int = 10000  # PBKDF2 rounds of new SCRAM verifiers (RFC 7677: >= 4096)
    # OAUTHBEARER (RFC 7628) and XOAUTH2: JWT access tokens.
    oauth_issuer: str = ""  # the "iss" every token must carry
    oauth_audience: str = ""  # the "aud" every token must include
    oauth_jwks: str = ""  # JWKS file path, or https:// URL fetched and cached
    oauth_jwks_ttl: float = 3600.0  # seconds a fetched JWKS is reused
    oauth_jwks_ca_file: str = ""  # CA bundle for an https JWKS; empty: system CAs
    oauth_user_claims: tuple[str, ...] = ("email", "sub")  # first present names the user
    oauth_strip_domain: str = ""  # "example.com": "ann@example.com" logs in as "ann"
    oauth_algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    oauth_leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf/iat
    # Brute-force protection; the first delay is pop3.auth_failure_delay, doubling per
    # recent failure of the same source IP or user, up to failure_delay_max.
    failure_delay_max: float = 15.0
    failure_half_life: float = 300.0  # seconds for a remembered failure to count half
    ip_lockout_failures: int = 10  # recent failures that lock out a source IP; 0: never
    user_lockout_failures: int = 10  # recent failures that lock out a user name; 0: never
    lockout_duration: float = 300.0  # seconds a lockout lasts ([LOGIN-DELAY] meanwhile)
    max_tracked: int = 100000  # source IPs and names remembered; the oldest are forgotten
    # NTLM ([MS-NLMP]): users need an NT hash, stored at password-set time while offered.
    ntlm_allow_v1: bool = False  # NTLMv1/LM responses (fetchmail, mpop send only those)
    ntlm_domain: str = "POPBOX"  # NetBIOS domain name the CHALLENGE announces
    ntlm_server_name: str = ""  # DNS name the CHALLENGE announces; empty: this host's name
    # GSSAPI (RFC 4752): Kerberos V5 with a service keytab.
    gssapi_keytab: str = ""  # empty: $KRB5_KTNAME, else the system keytab
    gssapi_service_name: str = ""  # "pop@mail.example.com"; empty: pop@<this host's name>
    gssapi_replay_cache: str = ""  # MIT rcache name; empty: "file2:<data_dir>/krb5.rcache"
    gssapi_strip_realm: bool = True  # alice@REALM logs in as alice (REALM: the service's)
    gssapi_principal_map: tuple[str, ...] = ()  # "principal=mailbox" pairs, looked up first


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Processes, load balancers, limits and observability (DESIGN.md section 4)."""

    workers: int = 0  # processes serving the listeners; 0: one per CPU core; 1: no supervisor
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose connections start with a PROXY header
    proxy_header_timeout: float = 5.0  # seconds a trusted proxy has to send its header
    max_connections: int = 0  # POP3 connections on this node at once; 0: no limit
    max_connections_per_ip: int = 0  # ... from one client address; 0: no limit
    max_sessions_per_user: int = 0  # logged-in sessions of one user on this node; 0: no limit
    metrics_listen: str = ""  # "host:port" for /metrics and /healthz; empty: off
    json_logs: bool = False  # one JSON object per log line instead of key=value text
    protocol_log_users: tuple[str, ...] = ()  # users whose command lines and replies are logged


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("./popbox-data")
    compat: Compat = "exchange2013"
    pop3: Pop3Config = field(default_factory=Pop3Config)
    tls: TlsConfig = field(default_factory=TlsConfig)
    lmtp: LmtpConfig = field(default_factory=LmtpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


# The documented variances each profile changes together (DESIGN.md section 2).
COMPAT_PROFILES: dict[str, dict[str, Any]] = {
    "exchange2013": {},
    "exchange2007": {"max_command_size": 47},  # E0006: Exchange 2007's shipped default
    "rfc1939": {"lock_mailbox": True, "single_space_separators": True},
}


def default_config_path() -> Path:
    """``$POPBOX_CONFIG``, else ``./popbox.toml`` (DESIGN.md section 5)."""
    return Path(os.environ.get("POPBOX_CONFIG") or "popbox.toml")


def load(path: Path, *, required: bool = False) -> Config:
    """Read and validate ``path``; a missing file gives the defaults unless ``required``.

    A relative ``data_dir`` is taken relative to the file's folder, so a service started
    from any working directory finds the same data.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: configuration file not found") from None
        return from_mapping({})
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = from_mapping(raw)
    if not config.data_dir.is_absolute():
        config = dataclasses.replace(config, data_dir=path.parent / config.data_dir)
    return config


def from_mapping(raw: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a ``Config``."""
    _reject_unknown(raw, Config, "")
    compat = _convert(raw.get("compat", "exchange2013"), Compat, "compat")
    pop3_raw = _section(raw, "pop3")
    profile = COMPAT_PROFILES[compat]
    pop3 = _build(Pop3Config, {**profile, **pop3_raw}, "pop3")
    _check_pop3(pop3)
    storage = _build(StorageConfig, _section(raw, "storage"), "storage")
    if storage.backend == "postgresql" and not storage.dsn:
        raise ConfigError('storage.dsn: required when storage.backend = "postgresql"')
    config = Config(
        data_dir=Path(_convert(raw.get("data_dir", "./popbox-data"), str, "data_dir")),
        compat=compat,
        pop3=pop3,
        tls=_build(TlsConfig, _section(raw, "tls"), "tls"),
        lmtp=_build(LmtpConfig, _section(raw, "lmtp"), "lmtp"),
        storage=storage,
        quota=_build(QuotaConfig, _section(raw, "quota"), "quota"),
        retention=_build(RetentionConfig, _section(raw, "retention"), "retention"),
        auth=_build(AuthConfig, _section(raw, "auth"), "auth"),
        server=_build(ServerConfig, _section(raw, "server"), "server"),
    )
    _check_server(config.server)
    _check_auth(config.auth)
    _check_mail_in(config)
    if bool(config.tls.cert_file) != bool(config.tls.key_file):
        raise ConfigError("tls.cert_file and tls.key_file: set both or neither")
    for key, addresses in (
        ("pop3.listen", pop3.listen),
        ("pop3.tls_listen", pop3.tls_listen),
        ("lmtp.listen", config.lmtp.listen),
    ):
        for address in addresses:
            parse_address(address, key, allow_unix=key == "lmtp.listen")
    return config


def warnings(config: Config) -> list[str]:
    """Settings that are legal but probably unwise, for ``popbox config check``."""
    found = []
    if config.pop3.max_command_size < RFC2449_MIN_COMMAND_SIZE:
        found.append(
            f"pop3.max_command_size = {config.pop3.max_command_size}: RFC 2449 section 4 "
            f"requires servers offering CAPA to accept commands up to "
            f"{RFC2449_MIN_COMMAND_SIZE} octets (E0007)"
        )
    if config.pop3.login_type != "secure_login":
        found.append(
            f'pop3.login_type = "{config.pop3.login_type}": passwords may cross the '
            f"network unencrypted (V0010)"
        )
    if config.pop3.authenticated_timeout < 600:
        found.append(
            "pop3.authenticated_timeout is below the 10 minutes RFC 1939 section 3 requires"
        )
    return found


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


def dump(config: Config) -> str:
    """The effective configuration as TOML, for ``popbox config show``."""
    lines = [f"data_dir = {_toml_value(str(config.data_dir))}", f'compat = "{config.compat}"']
    for section in ("pop3", "tls", "lmtp", "storage", "auth", "server", "quota", "retention"):
        lines.append(f"\n[{section}]")
        values = getattr(config, section)
        lines.extend(
            f"{f.name} = {_toml_value(getattr(values, f.name))}"
            for f in dataclasses.fields(values)
            if getattr(values, f.name) is not None
        )
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a table ([{name}])")
    return cast("dict[str, Any]", value)


def _reject_unknown(raw: dict[str, Any], cls: type, prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown setting")


def _build(cls: type[_T], raw: dict[str, Any], section: str) -> _T:
    _reject_unknown(raw, cls, f"{section}.")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {
        key: _convert(value, _resolve(hints[key]), f"{section}.{key}") for key, value in raw.items()
    }
    return cls(**kwargs)


_TYPES: dict[str, Any] = {
    "LoginType": LoginType,
    "Compat": Compat,
    "Backend": Backend,
    "OverQuota": OverQuota,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "int | None": int | None,
    "tuple[str, ...]": tuple[str, ...],
}


def _resolve(annotation: object) -> Any:
    # Annotations are strings under `from __future__ import annotations`.
    return _TYPES[annotation] if isinstance(annotation, str) else annotation


def _convert(value: Any, expected: Any, key: str) -> Any:  # noqa: C901 - one case per type
    if expected in (LoginType, Compat, Backend, OverQuota):
        choices = get_args(expected)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, not {value!r}")
        return value
    if expected is int or expected == int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be a whole number, not {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, not {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, not {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{key}: must be a list of strings such as ["127.0.0.1:110"]')
    return tuple(value)


def _check_pop3(pop3: Pop3Config) -> None:
    if not MIN_COMMAND_SIZE <= pop3.max_command_size <= MAX_COMMAND_SIZE:
        raise ConfigError(
            f"pop3.max_command_size: {pop3.max_command_size} is outside the allowed range "
            f"{MIN_COMMAND_SIZE}..{MAX_COMMAND_SIZE} (E0006)"
        )
    for key in ("unauthenticated_timeout", "authenticated_timeout", "lock_lease"):
        if getattr(pop3, key) <= 0:
            raise ConfigError(f"pop3.{key}: must be greater than 0")
    for key in ("max_bad_commands", "max_auth_failures", "sasl_line_max"):
        if getattr(pop3, key) < 1:
            raise ConfigError(f"pop3.{key}: must be at least 1")
    for key in ("auth_failure_delay", "shutdown_grace"):
        if getattr(pop3, key) < 0:
            raise ConfigError(f"pop3.{key}: must not be negative")
    if len(pop3.banner.encode("utf-8")) > 400 or any(c in pop3.banner for c in "\r\n"):
        raise ConfigError("pop3.banner: must be one line of at most 400 octets")


def _check_server(server: ServerConfig) -> None:
    for key in ("workers", "max_connections", "max_connections_per_ip", "max_sessions_per_user"):
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
    "max_connections": "no limit",
    "max_connections_per_ip": "no limit",
    "max_sessions_per_user": "no limit",
}


def _check_mail_in(config: Config) -> None:
    lmtp, quota, retention = config.lmtp, config.quota, config.retention
    if lmtp.max_message_size < 1 or lmtp.timeout <= 0:
        raise ConfigError("lmtp.max_message_size and lmtp.timeout: must be greater than 0")
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


def _check_auth(auth: AuthConfig) -> None:
    for name in auth.mechanisms:
        if name not in MECHANISMS:
            raise ConfigError(f"auth.mechanisms: {name!r} is not one of {', '.join(MECHANISMS)}")
    if len(set(auth.mechanisms)) != len(auth.mechanisms):
        raise ConfigError("auth.mechanisms: a mechanism is listed twice")
    if auth.scram_iterations < 4096:
        raise ConfigError("auth.scram_iterations: must be at least 4096 (RFC 7677 s4)")
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
