"""The ``[[directory]]`` chain and the ``[names]`` section: where users live, how logins read.

Theory of operation: ``[[directory]]`` is an ordered array of tables, each with a ``name``
(unique: logs, metrics and ``/healthz`` use it), a ``type`` and optionally ``domains``
(then the directory is asked only about logins in those domains); the other keys of a
table are the backend's own.  No ``[[directory]]`` at all means one ``internal``
directory, so a configuration written before directories existed means what it did.
``[names]`` says how a login name becomes the name the directories look up.
"""

from __future__ import annotations

import re
from typing import Any, Final, cast

from popbox.config.directory_sections import (
    DIRECTORY_TYPES,
    PASSWD_FILE_DEFAULT_SCHEME,
    DirectoryConfig,
    DirectoryType,
    InternalSettings,
    NamesConfig,
    PasswdFileSettings,
)
from popbox.config.ldap import parse_ldap_directory
from popbox.config.sections import ConfigError

__all__ = ["parse_directories", "parse_names"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_COMMON_KEYS: Final = frozenset({"name", "type", "domains"})


def parse_directories(raw: object) -> tuple[DirectoryConfig, ...]:
    """Validate the ``[[directory]]`` array; none configured gives the one internal directory."""
    if raw is None:
        return (DirectoryConfig("internal", "internal", InternalSettings()),)
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("directory: must be an array of tables ([[directory]])")
    tables = cast("list[dict[str, Any]]", raw)
    found: list[DirectoryConfig] = []
    for index, table in enumerate(tables, 1):
        name = table.get("name")
        where = f"directory[{index}]" + (f' ("{name}")' if isinstance(name, str) else "")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}.name: required, letters, digits, '.', '_' or '-' (at most 63)"
            )
        if any(d.name == name for d in found):
            raise ConfigError(f'{where}.name: "{name}" is used by another directory')
        kind = table.get("type")
        if kind not in DIRECTORY_TYPES:
            raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(DIRECTORY_TYPES)}")
        domains = _domains(table.get("domains", []), f"{where}.domains")
        backend = {k: v for k, v in table.items() if k not in _COMMON_KEYS}
        found.append(DirectoryConfig(name, kind, _settings(kind, backend, where), domains))
    return tuple(found)


def _settings(kind: DirectoryType, backend: dict[str, Any], where: str) -> object:
    """The backend's own settings: one branch per directory type."""
    if kind == "internal":
        _reject_unknown(backend, (), where)
        return InternalSettings()
    if kind == "passwd-file":
        return _passwd_file(backend, where)
    return parse_ldap_directory(backend, where)


def _passwd_file(backend: dict[str, Any], where: str) -> PasswdFileSettings:
    _reject_unknown(backend, ("path", "default_scheme", "username_format"), where)
    path = backend.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}.path: required, the passwd-file's path")
    scheme = backend.get("default_scheme", PASSWD_FILE_DEFAULT_SCHEME)
    if not isinstance(scheme, str) or not scheme:
        raise ConfigError(f"{where}.default_scheme: must be a scheme name such as SHA512-CRYPT")
    username_format = backend.get("username_format", "%u")
    if username_format not in ("%u", "%n"):
        raise ConfigError(f'{where}.username_format: must be "%u" or "%n"')
    if username_format == "%n" and "%d" not in path:
        raise ConfigError(f'{where}.username_format: "%n" needs one file per domain ("%d")')
    return PasswdFileSettings(path, scheme.upper(), username_format)


def parse_names(raw: object) -> NamesConfig:
    """Validate the ``[names]`` table."""
    if raw is None:
        return NamesConfig()
    if not isinstance(raw, dict):
        raise ConfigError("names: must be a table ([names])")
    table = cast("dict[str, Any]", raw)
    _reject_unknown(table, ("default_domain", "lowercase", "windows_domains", "aliases"), "names")
    default_domain = table.get("default_domain", "")
    if not isinstance(default_domain, str) or "@" in default_domain:
        raise ConfigError("names.default_domain: must be a domain such as example.com")
    lowercase = table.get("lowercase", False)
    if not isinstance(lowercase, bool):
        raise ConfigError("names.lowercase: must be true or false")
    windows = _pairs(table.get("windows_domains", []), "names.windows_domains", "NETBIOS=domain")
    aliases = _pairs(table.get("aliases", []), "names.aliases", "login=user")
    return NamesConfig(
        default_domain=default_domain.lower(),
        lowercase=lowercase,
        windows_domains=tuple((netbios.upper(), dns.lower()) for netbios, dns in windows),
        aliases=aliases,
    )


def _pairs(raw: object, key: str, form: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f'{key}: must be a list of strings such as ["{form}"]')
    pairs = []
    for entry in cast("list[str]", raw):
        left, sep, right = entry.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ConfigError(f"{key}: {entry!r} is not of the form '{form}'")
        pairs.append((left.strip(), right.strip()))
    return tuple(pairs)


def _domains(raw: object, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f'{key}: must be a list of domains such as ["example.com"]')
    return tuple(domain.lower() for domain in cast("list[str]", raw))


def _reject_unknown(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting")
