"""The ``popbox`` command (DESIGN.md section 5): everything an operator does.

Each subcommand is a small function taking the parsed arguments and returning an exit
status.  Errors an operator can fix (a bad config key, an unknown user) are printed as
one line naming the problem, with exit status 1 (``deliver`` uses sysexits instead,
because MTAs read them).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from popbox import __version__
from popbox.auth.passwords import verifiers_for
from popbox.cli import admin, demo, mail, ops, users
from popbox.cli.support import load_config, with_store
from popbox.config import ConfigError, default_config_path, dump, load, warnings
from popbox.node import app, eventloop
from popbox.server.startup import StartupError
from popbox.server.tls import TlsConfigError, check_pair
from popbox.store.base import StoreError, UnknownUser, UserExists

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from typing import Any

    from popbox.store.base import MailStore

__all__ = ["main", "parse_size"]

_SIZE = re.compile(r"(\d+)\s*([KMGT]?)I?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"500M"`` → octets; plain digits are octets; K/M/G/T are powers of 1024."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500M or 2G")
    return int(match[1]) * _UNITS[match[2].upper()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, TlsConfigError) as exc:
        print(f"popbox: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _with_store(
    args: argparse.Namespace, work: Callable[[MailStore], Coroutine[Any, Any, int]]
) -> int:
    return with_store(args, lambda store, _config: work(store))


# -- serve, demo, config ------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else default_config_path()
    config = load(path, required=bool(args.config))
    try:
        # SIGHUP re-reads the file the server started from (none: only the certificate).
        eventloop.run(app.serve(config, config_path=path if path.is_file() else None))
    except (OSError, StartupError, StoreError, TlsConfigError) as exc:
        # A port in use, a store that is down, a worker that could not start: one line
        # naming the file, key or address, and a service manager retries.
        print(f"popbox: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    return demo.run(Path(args.dir))


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args)
    if config.tls.cert_file:  # a generated certificate is checked (and made) by serve
        check_pair(Path(config.tls.cert_file), Path(config.tls.key_file))
    for warning in warnings(config):
        print(f"warning: {warning}")
    print("configuration is valid")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(dump(load_config(args)))
    return 0


# -- users and mailboxes -----------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise SystemExit("popbox: the passwords do not match")
    if not password:
        raise SystemExit("popbox: the password must not be empty")
    return password


def _user_add(args: argparse.Namespace) -> int:
    verifiers = verifiers_for(_read_password(args), auth=load_config(args).auth)

    async def work(store: MailStore) -> int:
        try:
            await store.add_user(args.name, verifiers, args.quota)
        except UserExists:
            print(f"popbox: user {args.name} already exists", file=sys.stderr)
            return 1
        print(f"user {args.name} added")
        return 0

    return _with_store(args, work)


def _user_passwd(args: argparse.Namespace) -> int:
    verifiers = verifiers_for(_read_password(args), auth=load_config(args).auth)

    async def work(store: MailStore) -> int:
        await store.set_verifiers(args.name, verifiers)
        print(f"password of {args.name} changed")
        return 0

    return _with_store(args, work)


def _user_del(args: argparse.Namespace) -> int:
    async def work(store: MailStore) -> int:
        await store.delete_user(args.name)
        print(f"user {args.name} deleted with all messages")
        return 0

    return _with_store(args, work)


def _user_list(args: argparse.Namespace) -> int:
    async def work(store: MailStore) -> int:
        for user in await store.list_users():
            quota = "default" if user.quota is None else str(user.quota)
            usage = await store.usage(user.name)
            print(f"{user.name}\tquota={quota}\tused={usage}")
        return 0

    return _with_store(args, work)


def _mailbox_list(args: argparse.Namespace) -> int:
    async def work(store: MailStore) -> int:
        if await store.get_user(args.name) is None:
            raise UnknownUser(args.name)
        print("uid\tuidl\tsize\treceived")
        for info in await store.snapshot(args.name):
            received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.received_at))
            print(f"{info.uid}\t{info.uidl}\t{info.size}\t{received}")
        return 0

    return _with_store(args, work)


def _mailbox_delete(args: argparse.Namespace) -> int:
    async def work(store: MailStore) -> int:
        if await store.get_user(args.name) is None:
            raise UnknownUser(args.name)
        removed = await store.delete(args.name, args.uids)
        print(f"{removed} of {len(args.uids)} messages deleted")
        return 0 if removed == len(set(args.uids)) else 1

    return _with_store(args, work)


# -- the parser -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="popbox", description="popbox POP3 mail server")
    parser.add_argument("--version", action="version", version=f"popbox {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="configuration file (default: $POPBOX_CONFIG, then ./popbox.toml)"
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(handler=handler)
        return p

    command("serve", _serve, "run the server in the foreground")
    demo_parser = command("demo", _demo, "one-command trial server with a demo user")
    demo_parser.add_argument("--dir", default="popbox-demo", help="where the demo keeps data")

    config_sub = sub.add_parser("config", help="check or show the configuration").add_subparsers(
        required=True, metavar="ACTION"
    )
    command("check", _config_check, "validate the configuration", config_sub)
    command("show", _config_show, "print the effective configuration", config_sub)

    user_sub = sub.add_parser("user", help="manage users").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = command("add", _user_add, "create a user", user_sub)
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--quota", type=parse_size, help="mailbox quota, e.g. 500M (E0003)")
    passwd = command("passwd", _user_passwd, "change a user's password", user_sub)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    command("del", _user_del, "delete a user and their mail", user_sub).add_argument("name")
    command("list", _user_list, "list users", user_sub)

    mailbox_sub = sub.add_parser("mailbox", help="inspect mailboxes").add_subparsers(
        required=True, metavar="ACTION"
    )
    command(
        "list", _mailbox_list, "uid, size, received time per message", mailbox_sub
    ).add_argument("name")
    delete = command("delete", _mailbox_delete, "remove messages by uid", mailbox_sub)
    delete.add_argument("name")
    delete.add_argument("uids", type=int, nargs="+", metavar="UID")

    # deliver, import, export, expire and user quota: the mail-in commands.
    mail.register(command, sub, user_sub, parse_size)
    ops.register(command)  # migrate-store, stats
    users.register(command, user_sub)  # user disable, enable, import
    admin.register(command, sub)  # admin token create|list|revoke
    return parser
