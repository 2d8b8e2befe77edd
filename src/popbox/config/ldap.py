"""The settings of one ``[[directory]]`` table with ``type = "ldap"``, validated at load.

``config/directories.py`` reads the chain's own keys (``name``, ``type``, ``domains``)
and hands the rest of the table here; an unknown key is an error naming it.  Secrets come from
the table (``bind_password``) or, better, from a file (``bind_password_file``), which is
read once here so that a missing or unreadable file stops the server at start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from popbox.config.sections import ConfigError
from popbox.ldapwire.filters import FilterError, compile_filter

__all__ = [
    "FILTER_PLACEHOLDERS",
    "FilterTemplate",
    "LdapScope",
    "LdapSettings",
    "parse_ldap_directory",
]

LdapScope = Literal["subtree", "onelevel", "base"]

# Dovecot's names for the parts of a login (doc: "Variables"): %u the full user name
# (local@domain, or local alone), %n the local part (a DOMAIN\ prefix removed), %d the
# domain; %% is a literal percent sign.
FILTER_PLACEHOLDERS = {"u": "user", "n": "local", "d": "domain"}
_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class FilterTemplate:
    """A search filter split at its placeholders: ``literals[0]``, the value of the
    ``LoginName`` field ``fields[0]``, ``literals[1]``, ... (``%%`` already undone)."""

    text: str  # as written in the config, for messages
    literals: tuple[str, ...]
    fields: tuple[str, ...]  # "user" | "local" | "domain", one fewer than literals

    def __str__(self) -> str:  # `popbox config show` prints the filter as written
        return self.text


@dataclass(frozen=True, slots=True)
class LdapSettings:
    uris: tuple[str, ...]
    base_dn: str
    bind_dn: str = ""  # empty: search anonymously
    bind_password: str = ""
    filter: FilterTemplate = FilterTemplate("(uid=%u)", ("(uid=", ")"), ("user",))
    scope: LdapScope = "subtree"
    starttls: bool = False  # upgrade ldap:// connections with StartTLS (RFC 4513 section 3)
    ca_file: str = ""  # empty: the system's trusted CAs
    allow_plaintext: bool = False  # ldap:// without StartTLS: passwords in the clear
    mailbox_attribute: str = ""  # empty: the mailbox is the login's full user name
    quota_attribute: str = ""  # empty: the server's default quota
    quota_unit: int = 1  # bytes per unit of quota_attribute (1024 for a KiB count)
    active_directory: bool = False  # userAccountControl's ACCOUNTDISABLE bit, AD bind codes
    netbios_domain: str = ""  # with it, DOMAIN\user logins must name this domain
    pool_size: int = 16
    connect_timeout: float = 3.0  # seconds for each step of opening: TCP, TLS, service bind
    timeout: float = 5.0  # seconds for one login's directory work, all URIs included
    retry_interval: float = 10.0  # seconds a failed URI is skipped before it is tried again


_STRINGS = (
    "base_dn",
    "bind_dn",
    "bind_password",
    "bind_password_file",
    "filter",
    "scope",
    "ca_file",
    "mailbox_attribute",
    "quota_attribute",
    "netbios_domain",
)
_BOOLS = ("starttls", "allow_plaintext", "active_directory")
_NUMBERS = ("connect_timeout", "timeout", "retry_interval")
_INTS = ("pool_size", "quota_unit")
_KNOWN = frozenset({"uris", *_STRINGS, *_BOOLS, *_NUMBERS, *_INTS})


def parse_ldap_directory(table: dict[str, object], where: str) -> LdapSettings:
    """Validate the backend keys of one ``[[directory]]`` table of type ldap; ``where``
    prefixes key names in messages (e.g. ``directory[1] ("corp")``)."""
    for key in table:
        if key not in _KNOWN:
            raise ConfigError(f"{where}.{key}: unknown setting for an ldap directory")
    values = _typed_values(table, where)
    uris = _uris(table.get("uris"), where)
    starttls = bool(values.get("starttls", False))
    allow_plaintext = bool(values.get("allow_plaintext", False))
    for uri in uris:
        if uri.startswith("ldap://") and not starttls and not allow_plaintext:
            raise ConfigError(
                f"{where}.uris: {uri} would send passwords unencrypted; use ldaps://, "
                "or starttls = true, or (on a trusted network only) allow_plaintext = true"
            )
    base_dn = str(values.get("base_dn", ""))
    if not base_dn:
        raise ConfigError(f"{where}.base_dn: required for an ldap directory")
    scope = str(values.get("scope", "subtree"))
    if scope not in get_args(LdapScope):
        raise ConfigError(f"{where}.scope: {scope!r} is not one of subtree, onelevel, base")
    ca_file = str(values.get("ca_file", ""))
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"{where}.ca_file: {ca_file} is not a readable file")
    connect_timeout = _duration(values, "connect_timeout", 3.0, where)
    timeout = _duration(values, "timeout", 5.0, where)
    if connect_timeout >= timeout:
        raise ConfigError(
            f"{where}.connect_timeout: must be below timeout ({timeout:g} s), or a server "
            "that does not answer uses up the whole login before the next URI is tried"
        )
    return LdapSettings(
        uris=uris,
        base_dn=base_dn,
        bind_dn=str(values.get("bind_dn", "")),
        bind_password=_bind_password(values, where),
        filter=parse_filter_template(str(values.get("filter", "(uid=%u)")), f"{where}.filter"),
        scope=scope,  # type: ignore[arg-type] # checked against LdapScope just above
        starttls=starttls,
        ca_file=ca_file,
        allow_plaintext=allow_plaintext,
        mailbox_attribute=str(values.get("mailbox_attribute", "")),
        quota_attribute=str(values.get("quota_attribute", "")),
        quota_unit=_positive_int(values, "quota_unit", 1, where),
        active_directory=bool(values.get("active_directory", False)),
        netbios_domain=str(values.get("netbios_domain", "")),
        pool_size=_positive_int(values, "pool_size", 16, where),
        connect_timeout=connect_timeout,
        timeout=timeout,
        retry_interval=_duration(values, "retry_interval", 10.0, where),
    )


def parse_filter_template(text: str, key: str) -> FilterTemplate:
    """Split ``text`` at ``%u``/``%n``/``%d``; ``%%`` is a literal percent sign."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ConfigError(f"{key}: {text!r} must be one parenthesised LDAP filter")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ConfigError(f"{key}: {text!r} has unbalanced parentheses")
    literals: list[str] = []
    fields: list[str] = []
    current = ""
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        current += text[position : match.start()]
        position = match.end()
        letter = match.group(1)
        if letter == "%":
            current += "%"
        elif letter in FILTER_PLACEHOLDERS:
            literals.append(current)
            fields.append(FILTER_PLACEHOLDERS[letter])
            current = ""
        else:
            raise ConfigError(f"{key}: %{letter} is not a placeholder; use %u, %n, %d or %%")
    literals.append(current + text[position:])
    if not fields:
        raise ConfigError(f"{key}: {text!r} names no part of the login (%u, %n or %d)")
    try:
        # Every login's filter is this one with escaped values in the placeholders.
        compile_filter("x".join(literals))
    except FilterError as exc:
        raise ConfigError(f"{key}: not an LDAP filter (RFC 4515): {exc}") from None
    return FilterTemplate(text, tuple(literals), tuple(fields))


def _typed_values(table: dict[str, object], where: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for key in (*_STRINGS, *_BOOLS, *_NUMBERS, *_INTS):
        if key not in table:
            continue
        value = table[key]
        if key in _STRINGS and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: must be a string, not {value!r}")
        if key in _BOOLS and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: must be true or false, not {value!r}")
        if key in _NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}.{key}: must be a number of seconds, not {value!r}")
        if key in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}.{key}: must be a whole number, not {value!r}")
        values[key] = value
    return values


def _uris(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}.uris: required, a list such as ["ldaps://dc1.example.com"]')
    uris: list[str] = []
    for uri in value:
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:
            raise ConfigError(f"{where}.uris: {uri!r} is not a valid URI") from None
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ConfigError(f"{where}.uris: {uri!r} must look like ldaps://host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{where}.uris: {uri!r}: give the base DN in base_dn, not in the URI")
        if port == 0:
            raise ConfigError(f"{where}.uris: {uri!r} has port 0")
        uris.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(uris)


def _bind_password(values: dict[str, object], where: str) -> str:
    inline = str(values.get("bind_password", ""))
    path = str(values.get("bind_password_file", ""))
    if inline and path:
        raise ConfigError(f"{where}.bind_password_file: set it or bind_password, not both")
    if not path:
        return inline
    try:
        # One line; a trailing newline from `echo secret > file` is not part of it.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}.bind_password_file: cannot read {path}: {exc}") from None


def _positive_int(values: dict[str, object], key: str, default: int, where: str) -> int:
    value = values.get(key, default)
    assert isinstance(value, int)
    if value < 1:
        raise ConfigError(f"{where}.{key}: must be at least 1")
    return value


def _duration(values: dict[str, object], key: str, default: float, where: str) -> float:
    value = values.get(key, default)
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}.{key}: must be a positive number of seconds")
    return float(value)
