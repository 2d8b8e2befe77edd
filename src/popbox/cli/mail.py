"""The mail-in subcommands of ``popbox``: deliver, import, export, expire, user quota.

``popbox.cli`` builds the parser and calls ``register`` to add these.  ``deliver`` is an MDA
(Postfix ``mailbox_command``, procmail/Exim pipes), so it speaks sysexits: 0 delivered,
65 the message is unacceptable (a NUL byte), 67 no such user, 73 mailbox full with
``[lmtp] over_quota = "permanent"``, 75 try again later (a full mailbox by default, the
store unavailable).  The others print one line naming any problem and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.cli.progress import ProgressBar
from popbox.cli.support import load_config, open_configured_store, with_store
from popbox.config import ConfigError
from popbox.delivery.agent import DeliveryAgent
from popbox.delivery.quota import effective_quota
from popbox.delivery.retention import expire_all
from popbox.store.base import DeliveryRefused, StoreError, UnknownUser
from popbox.store.message import MalformedMessage, prepare
from popbox.transfer.exporter import export_maildir, export_mbox
from popbox.transfer.importer import ImportOptions, ImportReport, run_import
from popbox.transfer.sources import read_eml_folder, read_maildir, read_mbox
from popbox.transfer.uidl import DEFAULT_DOVECOT_FORMAT, read_uidl_map

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from popbox.config import Config
    from popbox.store.base import MailStore, NewMessage
    from popbox.transfer.sources import SourceMessage

__all__ = ["register"]

EX_OK = 0
EX_DATAERR = 65  # sysexits: the message itself is unacceptable
EX_NOUSER = 67  # sysexits: no such recipient
EX_CANTCREAT = 73  # sysexits: cannot create (Postfix: 5.2.0, a permanent failure)
EX_TEMPFAIL = 75  # sysexits: try again later


def register(
    command: Callable[..., argparse.ArgumentParser],
    sub: Any,
    user_sub: Any,
    parse_size: Callable[[str], int],
) -> None:
    """Add the subcommands to ``popbox``'s parser (``command`` is cli's helper)."""
    deliver = command("deliver", _deliver, "deliver a message from stdin (MDA)", sub)
    deliver.add_argument("names", nargs="+", metavar="NAME")

    imp = command("import", _import, "import mail from mbox, Maildir or .eml files", sub)
    imp.add_argument("kind", choices=("mbox", "maildir", "eml"))
    imp.add_argument("name", metavar="NAME")
    imp.add_argument("path", metavar="PATH", type=Path)
    imp.add_argument("--keep-uidl", action="store_true", help="keep the old unique-ids")
    imp.add_argument("--uidl-map", type=Path, metavar="FILE", help="CSV of key,uidl lines")
    imp.add_argument(
        "--uidl-format",
        default=DEFAULT_DOVECOT_FORMAT,
        help="Dovecot's pop3_uidl_format for dovecot-uidlist entries without a saved UIDL",
    )
    imp.add_argument("--mbox-variant", choices=("mboxrd", "mboxo"), default="mboxrd")
    imp.add_argument("--batch", type=int, default=500, help="messages per transaction")

    exp = command("export", _export, "export a mailbox as mbox or Maildir", sub)
    exp.add_argument("name", metavar="NAME")
    exp.add_argument("kind", choices=("mbox", "maildir"))
    exp.add_argument("path", metavar="PATH", type=Path)

    command("expire", _expire, "remove the messages retention no longer keeps (cron)", sub)

    quota = command("quota", _user_quota, "set a user's own quota, or none (E0003)", user_sub)
    quota.add_argument("name")
    quota.add_argument("size", help="e.g. 500M, 2G, octets; none: the server default applies")
    quota.set_defaults(parse_size=parse_size)


# -- deliver (MDA) -------------------------------------------------------------------


def _strip_envelope_line(raw: bytes) -> bytes:
    # Postfix local(8) and procmail put an mbox "From sender date" line first: framing,
    # not a header field (C0011 would otherwise make the whole message a body).
    if raw.startswith(b"From "):
        end = raw.find(b"\n")
        return b"" if end < 0 else raw[end + 1 :]
    return raw


def _deliver(args: argparse.Namespace) -> int:
    """MDA: durable before exit 0; sysexits otherwise (module docs)."""
    raw = _strip_envelope_line(sys.stdin.buffer.read())
    try:
        message = prepare(raw)
    except MalformedMessage as exc:
        print(f"popbox deliver: refused: {exc}", file=sys.stderr)
        return EX_DATAERR
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"popbox deliver: {exc}", file=sys.stderr)
        return EX_TEMPFAIL

    async def run() -> int:
        store = await open_configured_store(config)
        hostname = config.lmtp.hostname or socket.gethostname()
        agent = DeliveryAgent(store, config.quota, hostname=hostname)
        status = EX_OK
        try:
            for name in args.names:
                status = max(status, await _deliver_one(agent, name, message, config))
        finally:
            await store.close()
        return status

    try:
        return asyncio.run(run())
    except (StoreError, OSError) as exc:
        print(f"popbox deliver: store unavailable: {exc}", file=sys.stderr)
        return EX_TEMPFAIL


async def _deliver_one(agent: DeliveryAgent, name: str, message: NewMessage, config: Config) -> int:
    try:
        info = await agent.deliver(name, message)
    except UnknownUser:
        print(f"popbox deliver: {name}: no such user", file=sys.stderr)
        return EX_NOUSER
    except DeliveryRefused as exc:
        print(f"popbox deliver: {name}: mailbox full: {exc}", file=sys.stderr)
        return EX_CANTCREAT if config.lmtp.over_quota == "permanent" else EX_TEMPFAIL
    except StoreError as exc:
        print(f"popbox deliver: {name}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"delivered to {name} as uid {info.uid} ({info.size} octets)")
    return EX_OK


# -- import / export ------------------------------------------------------------------


def _source(args: argparse.Namespace) -> Callable[[], Iterator[SourceMessage]]:
    path: Path = args.path
    if args.kind == "mbox":
        return lambda: read_mbox(path, args.mbox_variant)
    if args.kind == "maildir":
        return lambda: read_maildir(path, args.uidl_format)
    return lambda: read_eml_folder(path)


def _import(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise SystemExit("popbox: --batch must be at least 1")
    uidl_map = read_uidl_map(args.uidl_map) if args.uidl_map else {}
    options = ImportOptions(keep_uidl=args.keep_uidl, uidl_map=uidl_map, batch_messages=args.batch)
    bar = ProgressBar(sys.stderr, f"importing into {args.name}")
    report = ImportReport()

    async def work(store: MailStore, config: Config) -> int:
        del config
        nonlocal report
        report = await run_import(store, args.name, _source(args), options, progress=bar)
        bar.finish()
        _print_report(args.name, report)
        complete = report.imported + report.already == report.total
        return 0 if complete else 1

    try:
        return with_store(args, work)
    except KeyboardInterrupt:
        bar.finish()
        print("popbox: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _print_report(name: str, report: ImportReport) -> None:
    print(
        f"imported {report.imported} of {report.total} messages ({report.octets} octets)"
        f" into {name}"
    )
    print(f"  already imported before, skipped: {report.already}")
    print(f"  kept their old unique-id: {report.kept_uidl}")
    if report.uids_above:
        print(f"  new messages get unique-ids above {report.uids_above}")
    if report.problems:
        print(f"problems ({len(report.problems)}):")
        for problem in report.problems:
            print(f"  {problem}")


def _export(args: argparse.Namespace) -> int:
    async def work(store: MailStore, config: Config) -> int:
        del config
        export = export_mbox if args.kind == "mbox" else export_maildir
        report = await export(store, args.name, args.path)
        print(f"exported {report.messages} messages ({report.octets} octets) to {args.path}")
        if args.kind == "mbox":
            print(f"  unique-ids in {args.path}.uidl.csv (for import --uidl-map)")
        return 0

    return with_store(args, work)


# -- retention and quota --------------------------------------------------------------


def _expire(args: argparse.Namespace) -> int:
    async def work(store: MailStore, config: Config) -> int:
        policy = config.retention
        if policy.retrieved_days is None and policy.unretrieved_days is None:
            print("no retention policy is configured ([retention]); nothing to remove")
            return 0
        removed = await expire_all(store, policy, time.time())
        for name, count in sorted(removed.items()):
            print(f"{name}\t{count}")
        print(f"removed {sum(removed.values())} messages from {len(removed)} mailboxes")
        return 0

    return with_store(args, work)


def _user_quota(args: argparse.Namespace) -> int:
    text: str = args.size
    try:
        quota = None if text.lower() in {"none", "default"} else args.parse_size(text)
    except argparse.ArgumentTypeError as exc:
        print(f"popbox: {exc}", file=sys.stderr)
        return 1

    async def work(store: MailStore, config: Config) -> int:
        await store.set_quota(args.name, quota)
        user = await store.get_user(args.name)
        assert user is not None
        effective = effective_quota(user, config.quota)
        limit = "unlimited" if effective is None else f"{effective} octets"
        source = "its own" if quota is not None else "the server default"
        print(f"quota of {args.name}: {limit} ({source})")
        return 0

    return with_store(args, work)
