"""``popbox admin token create|list|revoke``: the admin API's bearer tokens.

``create`` prints the token once; only its digest is stored (``admin/tokens.py``).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from popbox.admin import tokens
from popbox.cli.support import with_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.config import Config
    from popbox.store.base import MailStore

__all__ = ["register"]


def register(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    admin_sub = sub.add_parser("admin", help="the admin API").add_subparsers(
        required=True, metavar="ACTION"
    )
    token_sub = admin_sub.add_parser("token", help="API tokens").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = command("create", _create, "make a token and print it (once)", token_sub)
    create.add_argument("--scope", choices=tokens.SCOPES, required=True)
    create.add_argument("--expires", type=_duration, help="lifetime, e.g. 90d, 12h; default: never")
    create.add_argument("--note", default="", help="what the token is for")
    command("list", _list, "list tokens (never their secrets)", token_sub)
    revoke = command("revoke", _revoke, "revoke a token by its id", token_sub)
    revoke.add_argument("id")


def _duration(text: str) -> float:
    try:
        return tokens.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _create(args: argparse.Namespace) -> int:
    async def work(store: MailStore, _config: Config) -> int:
        token, record = tokens.issue(
            args.scope, now=time.time(), lifetime=args.expires, note=args.note
        )
        await store.admin.add_token(record)
        print(token)
        return 0

    return with_store(args, work)


def _list(args: argparse.Namespace) -> int:
    async def work(store: MailStore, _config: Config) -> int:
        print("id\tscope\tcreated\texpires\tnote")
        for record in await store.admin.tokens():
            expires = "never" if record.expires_at is None else _stamp(record.expires_at)
            print(
                f"{record.id}\t{record.scope}\t{_stamp(record.created_at)}\t{expires}\t{record.note}"
            )
        return 0

    return with_store(args, work)


def _revoke(args: argparse.Namespace) -> int:
    async def work(store: MailStore, _config: Config) -> int:
        if not await store.admin.revoke_token(args.id):
            print(f"popbox: no token {args.id}")
            return 1
        print(f"token {args.id} revoked")
        return 0

    return with_store(args, work)


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
