"""The settings of user directories and login names (parsed by ``config/directories.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DIRECTORY_TYPES",
    "PASSWD_FILE_DEFAULT_SCHEME",
    "DirectoryConfig",
    "DirectoryType",
    "InternalSettings",
    "NamesConfig",
    "PasswdFileSettings",
]

DirectoryType = Literal["internal", "passwd-file", "ldap"]
DIRECTORY_TYPES: Final = ("internal", "passwd-file", "ldap")
# Dovecot's passwd-file scheme for a hash with no {SCHEME} prefix: crypt(3), whose own
# "$id$" prefix says which variant ($1$ MD5, $5$ SHA-256, $6$ SHA-512, $2y$ bcrypt).
PASSWD_FILE_DEFAULT_SCHEME: Final = "CRYPT"  # noqa: S105 - a scheme name, not a password


@dataclass(frozen=True, slots=True)
class InternalSettings:
    """The users table of the mail store (``popbox user add``); no settings of its own."""


@dataclass(frozen=True, slots=True)
class PasswdFileSettings:
    """A Dovecot passwd-file: ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields``."""

    path: str  # one file, or one per domain with "%d" standing for the login's domain
    default_scheme: str = PASSWD_FILE_DEFAULT_SCHEME  # for a hash with no {SCHEME} prefix
    # What the file's first field holds: "%u" the full user@domain, "%n" the local part
    # only (usual with one file per domain).
    username_format: Literal["%u", "%n"] = "%u"


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    """One ``[[directory]]`` table."""

    name: str
    type: DirectoryType
    # InternalSettings, PasswdFileSettings, or config/ldap.py's LdapSettings: typed
    # loosely so that this leaf module need not import every backend's settings (the
    # LDAP ones import the config errors, which import these sections).
    # directory/factory.py builds the backend from it, one branch per type.
    settings: object
    domains: tuple[str, ...] = ()  # lower-cased; empty: every login


@dataclass(frozen=True, slots=True)
class NamesConfig:
    """How a login name becomes the user name the directories look up."""

    default_domain: str = ""  # a bare "ann" becomes "ann@<default_domain>"; empty: stays bare
    lowercase: bool = False  # fold the local part too (the domain is always folded)
    # "NETBIOS=dns.domain" pairs: "EXAMPLE\ann" logs in as "ann@example.com".  An unlisted
    # NetBIOS name is taken as the domain itself, lower-cased.
    windows_domains: tuple[tuple[str, str], ...] = ()
    # "login=user" pairs, matched after the rules above: the login opens that user's mailbox.
    aliases: tuple[tuple[str, str], ...] = ()
