"""Building the chain from the configuration: one branch per directory type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from popbox.clock import SystemClock
from popbox.config.directory_sections import InternalSettings, NamesConfig, PasswdFileSettings
from popbox.config.ldap import LdapSettings
from popbox.directory.chain import DirectoryChain, Link
from popbox.directory.internal import InternalDirectory
from popbox.directory.ldap import LdapDirectory
from popbox.directory.names import LoginNames
from popbox.directory.passwd_file import PasswdFileDirectory

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.clock import Clock
    from popbox.config import Config
    from popbox.config.directory_sections import DirectoryConfig
    from popbox.directory.base import Directory, Status
    from popbox.directory.internal import HashVerifier
    from popbox.store.base import MailStore

__all__ = ["DirectoryDeps", "build_chain", "build_directory", "internal_chain"]


@dataclass(frozen=True, slots=True)
class DirectoryDeps:
    """What a backend may need from the server that builds it."""

    store: MailStore
    verifier: HashVerifier  # the server's argon2id verifier (auth.passwords.PasswordVerifier)
    log: structlog.typing.FilteringBoundLogger
    clock: Clock
    config: Config


def build_directory(config: DirectoryConfig, deps: DirectoryDeps) -> Directory:
    """The backend ``config`` describes."""
    settings = config.settings
    if isinstance(settings, InternalSettings):
        rehash = deps.config.auth.rehash_on_login
        return InternalDirectory(config.name, deps.store, deps.verifier, rehash_on_login=rehash)
    if isinstance(settings, PasswdFileSettings):
        fold = deps.config.names.lowercase
        return PasswdFileDirectory(config.name, settings, deps.log, fold_local=fold)
    if isinstance(settings, LdapSettings):
        return LdapDirectory(config.name, settings, clock=deps.clock, log=deps.log)
    raise TypeError(f"directory {config.name}: no backend for {type(settings).__name__}")


def build_chain(
    deps: DirectoryDeps, *, observe: Callable[[str, Status, bool], None] | None = None
) -> DirectoryChain:
    """Every ``[[directory]]`` of the configuration, in order (the internal store alone
    when none is configured).  ``observe`` counts each directory's answers (metrics)."""
    links = [
        Link(
            build_directory(entry, deps),
            frozenset(entry.domains),
            internal=entry.type == "internal",
        )
        for entry in deps.config.directories
    ]
    names = LoginNames(deps.config.names)
    return DirectoryChain(links, names, deps.log, deps.clock, observe=observe)


def internal_chain(store: MailStore, verifier: HashVerifier) -> DirectoryChain:
    """The chain of a server without ``[[directory]]``: the mail store's users alone, with
    the default ``[names]`` rules, for mechanisms built without a server's chain."""
    directory = InternalDirectory("internal", store, verifier, rehash_on_login=True)
    log = structlog.get_logger("popbox.directory")
    return DirectoryChain(
        [Link(directory, internal=True)], LoginNames(NamesConfig()), log, SystemClock()
    )
