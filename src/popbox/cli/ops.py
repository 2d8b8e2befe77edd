"""``popbox migrate-store`` and ``popbox stats``: moving an installation, looking at one.

``migrate-store --from sqlite:PATH --to postgresql://...`` copies every user, with their
credentials, quota and messages (uids, unique-ids and the mailbox counters included, so
clients that leave mail on the server download nothing again) with ``copy_store``.  Stop
deliveries first: an MTA queues and retries while the server is down.

``stats`` prints what the store holds (users, messages, octets) and, when the server's
metrics listener (``server.metrics_listen``) answers, the live counters of the running
node.
"""

# ruff: noqa: T201 - a command-line program prints to its terminal
from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.config import default_config_path, load, parse_address
from popbox.store import SQLITE_FILE_NAME, open_configured, open_store
from popbox.store.base import StoreError, UserExists
from popbox.store.store_copy import copy_store

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from popbox.store.base import MailStore

__all__ = ["register"]

# The live counters ``stats`` shows, in this order, with what to call them.
LIVE = (
    ("popbox_workers", "workers"),
    ("popbox_connections_open", "connections open"),
    ("popbox_connections_total", "connections since start"),
    ("popbox_connections_refused_total", "connections refused"),
    ("popbox_logins_total", "logins"),
    ("popbox_sent_bytes_total", "octets sent"),
    ("popbox_deliveries_total", "deliveries"),
)


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    migrate = command(
        "migrate-store", _migrate_store, "copy every user and message to another store"
    )
    migrate.add_argument(
        "--from", dest="source", required=True, help="sqlite:PATH (data dir or file) or a URL"
    )
    migrate.add_argument("--to", dest="target", required=True, help="postgresql://...")
    command("stats", _stats, "what the store holds, and the running server's counters")


def open_spec(spec: str) -> MailStore:
    """``sqlite:PATH`` (a data directory or the database file) or ``postgresql://...``."""
    if spec.startswith(("postgresql://", "postgres://")):
        return open_store("postgresql", data_dir=Path(), dsn=spec)
    if spec.startswith("sqlite:"):
        path = Path(spec.removeprefix("sqlite:"))
        if path.is_dir():
            return open_store("sqlite", data_dir=path, dsn="")
        if path.name == SQLITE_FILE_NAME and path.is_file():
            return open_store("sqlite", data_dir=path.parent, dsn="")
        raise ValueError(f"{spec}: no popbox data directory or {SQLITE_FILE_NAME} there")
    raise ValueError(f"{spec}: expected sqlite:PATH or postgresql://...")


def _migrate_store(args: argparse.Namespace) -> int:
    async def run() -> int:
        source, target = open_spec(args.source), open_spec(args.target)
        await source.open()
        try:
            await target.open()
            try:
                total = await copy_store(source, target, progress=_progress)
            finally:
                await target.close()
        finally:
            await source.close()
        print(f"copied {total} messages")
        return 0

    try:
        return asyncio.run(run())
    except (ValueError, TypeError, UserExists, StoreError) as exc:
        print(f"popbox migrate-store: {exc}", file=sys.stderr)
        return 1


def _progress(name: str, messages: int) -> None:
    print(f"{name}: {messages} messages")


def _stats(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else default_config_path()
    config = load(path, required=bool(args.config))

    async def run() -> tuple[int, int, int]:
        store = open_configured(config)
        await store.open()
        try:
            users = await store.list_users()
            messages = octets = 0
            for user in users:
                messages += len(await store.snapshot(user.name))
                octets += await store.usage(user.name)
            return len(users), messages, octets
        finally:
            await store.close()

    try:
        users, messages, octets = asyncio.run(run())
    except StoreError as exc:
        print(f"popbox stats: store unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"users\t{users}\nmessages\t{messages}\noctets\t{octets}")
    if config.server.metrics_listen:
        _print_live(config.server.metrics_listen)
    return 0


def _print_live(listen: str) -> None:
    host, port = parse_address(listen, "server.metrics_listen")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading where a server listens
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        print(f"server\tnot answering at {url} ({exc})")
        return
    totals = _sum_samples(text)
    for name, label in LIVE:
        if name in totals:
            print(f"{label}\t{totals[name]:g}")


def _sum_samples(text: str) -> dict[str, float]:
    """Sample name -> sum over its labels, from a Prometheus text exposition."""
    totals: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name = key.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals
