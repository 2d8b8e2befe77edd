"""Typed, frozen configuration loaded from one TOML file and validated at load.

Every setting has a default, so an empty file (or none at all) is a valid configuration.
A wrong key or value raises ``ConfigError`` whose message names the TOML key path.  The
``compat`` profile changes the documented Exchange variances together (DESIGN.md
section 2); any key set explicitly in the file still wins over the profile.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from popbox.config.checks import (
    check_admin,
    check_auth,
    check_mail_in,
    check_pop3,
    check_protocol_log,
    check_server,
    parse_address,
)
from popbox.config.connection_settings import check_connection_settings
from popbox.config.directories import parse_directories, parse_names
from popbox.config.profiles import (
    COMPAT_NAMES,
    DEFAULT_COMPAT,
    Compat,
    check_profile,
    profile_defaults,
)
from popbox.config.sections import (
    RFC2449_MIN_COMMAND_SIZE,
    AdminConfig,
    AuthConfig,
    Backend,
    Config,
    ConfigError,
    FailClosed,
    LmtpConfig,
    LoginType,
    LogLevel,
    OverQuota,
    Pop3Config,
    ProtocolLogConfig,
    QuotaConfig,
    RetentionConfig,
    ServerConfig,
    SortOrder,
    StorageConfig,
    SyncCommit,
    TlsConfig,
)
from popbox.config.tls_checks import check_tls

_T = TypeVar("_T")

__all__ = [
    "COMPAT_NAMES",
    "AdminConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LmtpConfig",
    "Pop3Config",
    "ProtocolLogConfig",
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


def default_config_path() -> Path:
    """``$POPBOX_CONFIG``, else ``./popbox.toml`` (DESIGN.md section 5)."""
    return Path(os.environ.get("POPBOX_CONFIG") or "popbox.toml")


def load(path: Path, *, required: bool = False) -> Config:
    """Read and validate ``path``; a missing file gives the defaults unless ``required``.

    A relative ``data_dir`` is taken relative to the file's folder, so a service started
    from any working directory finds the same data.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: configuration file not found") from None
        return from_mapping({})
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 (TOML 1.0 "Spec"); say where the first bad byte is.
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "TOML files must be UTF-8"
        ) from None
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
    _reject_unknown(raw, Config, "", renamed={"directory": "directories"})
    compat = _convert(raw.get("compat", DEFAULT_COMPAT), Compat, "compat")
    defaults = profile_defaults(compat, _section(raw, "auth"))

    def section(name: str) -> dict[str, Any]:  # the profile's defaults, then the file's
        return {**defaults.get(name, {}), **_section(raw, name)}

    pop3 = _build(Pop3Config, section("pop3"), "pop3")
    check_pop3(pop3)
    check_connection_settings(pop3)
    if problem := check_profile(compat, pop3):
        raise ConfigError(problem)
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
        auth=_build(AuthConfig, section("auth"), "auth"),
        server=_build(ServerConfig, section("server"), "server"),
        directories=parse_directories(raw.get("directory")),
        names=parse_names(raw.get("names")),
        protocol_log=_build(ProtocolLogConfig, _section(raw, "protocol_log"), "protocol_log"),
        admin=_build(AdminConfig, _section(raw, "admin"), "admin"),
    )
    check_admin(config.admin)
    check_server(config.server)
    check_auth(config.auth)
    check_mail_in(config)
    check_protocol_log(config.protocol_log)
    check_tls(config.tls)
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
    secret_mechanisms = [m for m in ("SCRAM-SHA-256", "NTLM") if m in config.auth.mechanisms]
    if secret_mechanisms and not any(d.type == "internal" for d in config.directories):
        found.append(
            f"auth.mechanisms offers {', '.join(secret_mechanisms)}, but no [[directory]] is "
            'of type "internal": only the store\'s own users have the secrets they need'
        )
    if config.pop3.authenticated_timeout < 600:
        found.append(
            "pop3.authenticated_timeout is below the 10 minutes RFC 1939 section 3 requires"
        )
    return found


def dump(config: Config) -> str:
    """The effective configuration as TOML, for ``popbox config show``."""
    lines = [f"data_dir = {_toml_value(str(config.data_dir))}", f'compat = "{config.compat}"']
    sections = ("pop3", "tls", "lmtp", "storage", "auth", "server", "quota", "retention", "admin")
    for section in sections:
        lines.append(f"\n[{section}]")
        values = getattr(config, section)
        lines.extend(
            f"{f.name} = {_toml_value(getattr(values, f.name))}"
            for f in dataclasses.fields(values)
            if getattr(values, f.name) is not None
        )
    lines.append("\n[names]")
    names = config.names
    lines.append(f"default_domain = {_toml_value(names.default_domain)}")
    lines.append(f"lowercase = {_toml_value(names.lowercase)}")
    for key, pairs in (("windows_domains", names.windows_domains), ("aliases", names.aliases)):
        lines.append(f"{key} = {_toml_value(tuple(f'{a}={b}' for a, b in pairs))}")
    for directory in config.directories:
        lines.append("\n[[directory]]")
        lines.append(f"name = {_toml_value(directory.name)}")
        lines.append(f"type = {_toml_value(directory.type)}")
        if directory.domains:
            lines.append(f"domains = {_toml_value(directory.domains)}")
        if dataclasses.is_dataclass(directory.settings):
            lines.extend(
                f"{f.name} = {_toml_value(_redacted(f.name, getattr(directory.settings, f.name)))}"
                for f in dataclasses.fields(directory.settings)
                if getattr(directory.settings, f.name) is not None
            )
    return "\n".join(lines) + "\n"


def _redacted(key: str, value: object) -> object:
    # `config show` output is pasted into tickets: a directory's bind password is not.
    return "(set)" if ("password" in key or "secret" in key) and value else value


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


def _reject_unknown(
    raw: dict[str, Any], cls: type, prefix: str, *, renamed: dict[str, str] | None = None
) -> None:
    """``renamed``: TOML key → field where they differ ([[directory]] fills ``directories``)."""
    renamed = renamed or {}
    known = {f.name for f in dataclasses.fields(cls)} - set(renamed.values()) | set(renamed)
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
    "LogLevel": LogLevel,
    "SortOrder": SortOrder,
    "SyncCommit": SyncCommit,
    "FailClosed": FailClosed,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "int | None": int | None,
    "float | None": float | None,
    "tuple[str, ...]": tuple[str, ...],
}


_CHOICES = (LoginType, Compat, Backend, OverQuota, LogLevel, SortOrder, SyncCommit, FailClosed)


def _resolve(annotation: object) -> Any:
    # Annotations are strings under `from __future__ import annotations`.
    return _TYPES[annotation] if isinstance(annotation, str) else annotation


def _convert(value: Any, expected: Any, key: str) -> Any:  # noqa: C901 - one case per type
    if expected in _CHOICES:
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
    if expected is float or expected == float | None:
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
