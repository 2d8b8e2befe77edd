"""``popbox user disable|enable`` and ``popbox user import passwd-file``.

An import copies each user of a Dovecot passwd-file into the mail store with the hash
exactly as the file has it (``internal.IMPORTED``): the internal directory verifies it in
its original scheme, and with ``auth.rehash_on_login`` the first successful login
replaces it by argon2id.  ``nologin`` users are imported disabled, with their reason;
``quota_rule`` becomes the mailbox quota.  Lines that cannot be read are named on stderr
and skipped; the exit status is then 1, the other users imported all the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.cli.support import with_store
from popbox.config.directory_sections import PASSWD_FILE_DEFAULT_SCHEME
from popbox.directory.internal import IMPORTED
from popbox.directory.passwd_entries import parse_lines
from popbox.store.base import UserExists

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from popbox.config import Config
    from popbox.directory.passwd_entries import Entry
    from popbox.store.base import MailStore

__all__ = ["register"]


def register(command: Callable[..., argparse.ArgumentParser], user_sub: Any) -> None:
    """Add ``disable``, ``enable`` and ``import`` to ``popbox user``."""
    disable = command(
        "disable", _disable, "refuse a user's logins (mail is still delivered)", user_sub
    )
    disable.add_argument("name")
    disable.add_argument(
        "--reason", default="", help="told to the user who logs in with the right password"
    )
    command("enable", _enable, "allow a disabled user's logins again", user_sub).add_argument(
        "name"
    )
    imp = command("import", _import, "copy users from another server's user file", user_sub)
    imp.add_argument("kind", choices=("passwd-file",))
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--default-scheme",
        default=PASSWD_FILE_DEFAULT_SCHEME,
        help="scheme of hashes without a {SCHEME} prefix (Dovecot's default: CRYPT)",
    )
    imp.add_argument("--domain", default="", help="append @DOMAIN to names without one")


def _disable(args: argparse.Namespace) -> int:
    async def work(store: MailStore, _config: Config) -> int:
        await store.set_disabled(args.name, args.reason)
        print(f"user {args.name} disabled")
        return 0

    return with_store(args, work)


def _enable(args: argparse.Namespace) -> int:
    async def work(store: MailStore, _config: Config) -> int:
        await store.set_disabled(args.name, None)
        print(f"user {args.name} enabled")
        return 0

    return with_store(args, work)


def _import(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        print(f"popbox: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    async def work(store: MailStore, config: Config) -> int:
        parsed = parse_lines(text, args.default_scheme.upper(), config.names.lowercase)
        status = 0
        for problem in parsed.problems:
            print(f"popbox: {path}:{problem.line}: skipped: {problem.text}", file=sys.stderr)
            status = 1
        imported = 0
        for entry in parsed.entries.values():
            if await _import_one(store, entry, path, args.domain.lower()):
                imported += 1
            else:
                status = 1
        print(f"{imported} of {len(parsed.entries)} users imported from {path}")
        return status

    return with_store(args, work)


async def _import_one(store: MailStore, entry: Entry, path: Path, domain: str) -> bool:
    name = entry.user if "@" in entry.user or not domain else f"{entry.user}@{domain}"
    where = f"{path}:{entry.line}"
    if entry.stored is None:
        print(f"popbox: {where}: {name} has no password, not imported", file=sys.stderr)
        return False
    if entry.mailbox is not None:
        print(
            f"popbox: {where}: {name} logs in to mailbox {entry.mailbox} (user=): imported "
            f'as {name}; add names.aliases = ["{name}={entry.mailbox}"] if you keep both',
            file=sys.stderr,
        )
    try:
        await store.add_user(name, {IMPORTED: str(entry.stored)}, entry.quota_bytes)
    except UserExists:
        print(f"popbox: {where}: user {name} already exists, left as it is", file=sys.stderr)
        return False
    if entry.disabled_reason is not None:
        await store.set_disabled(name, entry.disabled_reason)
    return True
