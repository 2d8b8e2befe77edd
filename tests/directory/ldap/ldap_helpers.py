"""Helpers for the LDAP directory tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from popbox.directory.base import LoginName
from popbox.directory.ldap import LdapDirectory
from slapd import BASE_DN, SERVICE_DN, SERVICE_PASSWORD

if TYPE_CHECKING:
    from pathlib import Path

    from popbox_servers import LogSink
    from slapd import Slapd

__all__ = ["LoggedDirectory", "ldap_table", "login"]


class LoggedDirectory(LdapDirectory):
    """An ``LdapDirectory`` that keeps its log lines for the test."""

    log_sink: LogSink


def ldap_table(server: Slapd | None, ca: Path, /, **keys: Any) -> dict[str, Any]:
    """The backend keys of the README's example directory, on ``server``'s ldaps://
    port (``name``, ``type`` and ``domains`` are the chain's: config/directories.py)."""
    table: dict[str, Any] = {
        "uris": [server.ldaps_uri] if server is not None else [],
        "ca_file": str(ca),
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "base_dn": f"ou=people,{BASE_DN}",
        "filter": "(&(objectClass=inetOrgPerson)(uid=%n))",
        "mailbox_attribute": "mail",
        "quota_attribute": "mailQuotaBytes",
        "active_directory": True,
        "timeout": 5.0,
        "connect_timeout": 2.0,
    }
    table.update(keys)
    return table


class TestDirectory(LdapDirectory):
    """An ``LdapDirectory`` that keeps its log lines for the test."""

    log_sink: LogSink


def login(raw: str) -> LoginName:
    """The parts the chain hands a directory (``base.LoginName``) for a raw login name:
    a ``DOMAIN\\`` prefix dropped, the domain lower-cased."""
    name = raw.rpartition("\\")[2]
    local, at, domain = name.rpartition("@") if "@" in name else (name, "", "")
    domain = domain.lower()
    return LoginName(raw=raw, user=f"{local}@{domain}" if at else local, local=local, domain=domain)
