"""The mail-in subcommands of ``popbox``: deliver, import, export, expire, user quota.

``popbox.cli`` builds the parser and calls ``register`` to add these.  ``deliver`` is an MDA
(Postfix ``mailbox_command``, procmail/Exim pipes), so it speaks sysexits: 0 delivered,
65 the message is unacceptable (a NUL byte, larger than ``[lmtp] max_message_size``),
67 no such user, 73 mailbox full with ``[lmtp] over_quota = "permanent"``, 75 try again
later (a full mailbox by default, the store unavailable).  The others print one line
naming any problem and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from popbox.cli import pop3
from popbox.cli.progress import ProgressBar
from popbox.cli.support import directory_chain, load_config, open_configured_store, with_store
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
    from popbox.transfer.sources import SourceItem

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

    imp = command("import", _import, "import mail from files or a POP3 server", sub)
    kinds = imp.add_subparsers(required=True, metavar="KIND")
    for kind, what in (("mbox", "an mbox file"), ("maildir", "a Maildir"), ("eml", ".eml files")):
        imp = kind_command(kind, _import, f"import mail from {what}", kinds)
        imp.set_defaults(kind=kind)
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
    pop3.register(command, kind_command, kinds, sub)  # import pop3, verify pop3

    exp = command("export", _export, "export a mailbox as mbox or Maildir", sub)
    exp.add_argument("name", metavar="NAME")
    exp.add_argument("kind", choices=("mbox", "maildir"))
    exp.add_argument("path", metavar="PATH", type=Path)

    command("expire", _expire, "remove the messages retention no longer keeps (cron)", sub)

    quota = command("quota", _user_quota, "set a user's own quota, or none (E0003)", user_sub)
    quota.add_argument("name")
    quota.add_argument("size", help="e.g. 500M, 2G, octets; none: the server default applies")
    quota.set_defaults(parse_size=parse_size)


def kind_command(
    name: str, handler: Callable[[argparse.Namespace], int], help_text: str, parent: Any
) -> argparse.ArgumentParser:
    """A KIND under a command that itself takes ``--config`` (``import mbox``, ...)."""
    kind: argparse.ArgumentParser = parent.add_parser(
        name, parents=[_config_after_kind()], help=help_text
    )
    kind.set_defaults(handler=handler)
    return kind


def _config_after_kind() -> argparse.ArgumentParser:
    # --config may come before or after the kind ("import --config F mbox ...", "import
    # mbox ... --config F"); SUPPRESS keeps the kind from resetting the first to None.
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", default=argparse.SUPPRESS, help="configuration file")
    return parent


# -- deliver (MDA) -------------------------------------------------------------------


def _read_message(stream: BinaryIO, limit: int) -> bytes | None:
    """The message on ``stream``, or None when it is larger than ``limit`` octets.

    Never reads more than ``limit + 1`` octets of message.  Postfix local(8) and
    procmail put an mbox "From sender date" line first: framing, not a header field
    (C0011 would otherwise make the whole message a body), so it is dropped and not
    counted, as LMTP counts only the DATA.
    """
    first = stream.readline(limit + 1)
    if first.startswith(b"From ") and len(first) <= limit:
        first = b""
    raw = first + stream.read(limit + 1 - len(first))
    return None if len(raw) > limit else raw


def _deliver(args: argparse.Namespace) -> int:
    """MDA: durable before exit 0; sysexits otherwise (module docs)."""
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"popbox deliver: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    limit = config.lmtp.max_message_size
    raw = _read_message(sys.stdin.buffer, limit)
    if raw is None:
        print(f"popbox deliver: refused: larger than {limit} octets", file=sys.stderr)
        return EX_DATAERR
    try:
        message = prepare(raw)
    except MalformedMessage as exc:
        print(f"popbox deliver: refused: {exc}", file=sys.stderr)
        return EX_DATAERR

    async def run() -> int:
        store = await open_configured_store(config)
        hostname = config.lmtp.hostname or socket.gethostname()
        directories = directory_chain(config, store)
        agent = DeliveryAgent(
            store,
            config.quota,
            hostname=hostname,
            dedup_window=config.lmtp.dedup_window,
            directories=directories,
        )
        # As LMTP does: names that resolve to one mailbox get one copy between them.
        outcomes: dict[str, int] = {}
        status = EX_OK
        try:
            for name in args.names:
                mailbox = await agent.resolve(name)
                if mailbox is None:
                    print(f"popbox deliver: {name}: no such user", file=sys.stderr)
                    status = max(status, EX_NOUSER)
                    continue
                if mailbox not in outcomes:
                    outcomes[mailbox] = await _deliver_one(agent, mailbox, (message, raw), config)
                status = max(status, outcomes[mailbox])
        finally:
            await directories.close()
            await store.close()
        return status

    try:
        return asyncio.run(run())
    except (StoreError, OSError) as exc:
        print(f"popbox deliver: store unavailable: {exc}", file=sys.stderr)
        return EX_TEMPFAIL


async def _deliver_one(
    agent: DeliveryAgent, name: str, content: tuple[NewMessage, bytes], config: Config
) -> int:
    message, raw = content  # the message to store, and what a retry is recognised by
    try:
        info = await agent.deliver(name, message, original=raw)
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


def _source(args: argparse.Namespace) -> Callable[[], Iterator[SourceItem]]:
    path: Path = args.path
    if args.kind == "mbox":
        return lambda: read_mbox(path, args.mbox_variant)
    if args.kind == "maildir":
        return lambda: read_maildir(path, args.uidl_format)
    return lambda: read_eml_folder(path)


def _import(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise SystemExit("popbox: --batch must be at least 1")
    try:
        uidl_map = read_uidl_map(args.uidl_map) if args.uidl_map else {}
    except ValueError as exc:
        print(f"popbox: --uidl-map: {exc}", file=sys.stderr)
        return 1
    options = ImportOptions(keep_uidl=args.keep_uidl, uidl_map=uidl_map, batch_messages=args.batch)
    bar = ProgressBar(sys.stderr, f"importing into {args.name}")
    report = ImportReport()

    async def work(store: MailStore, config: Config) -> int:
        del config
        nonlocal report
        report = await run_import(store, args.name, _source(args), options, progress=bar)
        bar.finish()
        _print_report(args.name, report)
        if report.complete:
            return 0
        missing = len(report.not_imported) or report.total - report.imported - report.already
        print(f"popbox import: {missing} not imported from {args.path}", file=sys.stderr)
        return 1

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
    if report.not_imported:
        print(f"not imported ({len(report.not_imported)}):")
        for item in report.not_imported:
            print(f"  {item.location}: {item.reason}")


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
