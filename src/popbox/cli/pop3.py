"""``popbox import pop3`` and ``popbox verify pop3``: moving mailboxes off a POP3 server.

The work is in ``transfer/pop3_*``; this module turns arguments into a ``Pop3Source``
and reports.  Exit status: 0 when every source message is in popbox (import) or the
listings agree (verify), 1 otherwise, each problem named on one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.cli.progress import ProgressBar
from popbox.cli.support import with_store
from popbox.transfer.pop3_client import Credentials, Pop3Url, SourceError, tls_context
from popbox.transfer.pop3_import import Pop3Import, Pop3Source, import_pop3
from popbox.transfer.pop3_users import UsersOptions, import_users, read_users
from popbox.transfer.pop3_verify import verify_pop3

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from popbox.config import Config
    from popbox.store.base import MailStore
    from popbox.transfer.pop3_import import Pop3ImportReport

__all__ = ["add_source_options", "import_command", "print_import_report", "verify_command"]


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a POP3 source and how to log in there."""
    parser.add_argument("--login", help="login name at the source (default: NAME)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    secret.add_argument("--password-file", type=Path, metavar="FILE", help="first line of FILE")
    parser.add_argument("--master-user", help="log in as this admin/master user for --login")
    parser.add_argument(
        "--master-separator", default="*", help="USER form login<SEP>master (default: *)"
    )
    parser.add_argument("--auth", choices=("auto", "user", "plain"), default="auto")
    parser.add_argument("--cafile", type=Path, help="trust only this CA file")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument(
        "--allow-plaintext", action="store_true", help="pop3:// without STLS is acceptable"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network step")


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"popbox: cannot read {args.password_file}: {exc}") from None
        password = lines[0] if lines else ""
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        raise SystemExit(
            "popbox: give the source password with --password-stdin or --password-file"
        )
    if not password:
        raise SystemExit("popbox: the source password is empty")
    return password


def _source(args: argparse.Namespace, url: str, login: str, password: str) -> Pop3Source:
    credentials = Credentials(
        login=login,
        password=password,
        master_user=args.master_user,
        master_separator=args.master_separator,
        auth=args.auth,
    )
    try:
        tls = tls_context(args.cafile, insecure=args.insecure)
    except OSError as exc:
        raise SystemExit(f"popbox: cannot read --cafile {args.cafile}: {exc}") from None
    return Pop3Source(
        Pop3Url.parse(url), credentials, tls, args.allow_plaintext, timeout=args.timeout
    )


def _options(args: argparse.Namespace, config: Config) -> Pop3Import:
    quota = None if args.ignore_quota else config.quota
    return Pop3Import(
        config.lmtp.max_message_size, quota, batch_messages=args.batch, spool_dir=config.data_dir
    )


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except SourceError as exc:
        print(f"popbox: {exc}", file=sys.stderr)
        return 1


def import_command(args: argparse.Namespace) -> int:
    """``popbox import pop3 NAME URL`` or ``popbox import pop3 --users FILE URL``."""
    if args.batch < 1:
        raise SystemExit("popbox: --batch must be at least 1")
    if args.users is not None:
        if len(args.target) != 1:
            raise SystemExit("popbox: with --users give only the source URL")
        return _guarded(lambda: _import_users(args, args.target[0]))
    if len(args.target) != 2:
        raise SystemExit("popbox: give NAME and the source URL (or --users FILE URL)")
    name, url = args.target
    return _guarded(lambda: _import_one(args, name, url))


def _import_one(args: argparse.Namespace, name: str, url: str) -> int:
    source = _source(args, url, args.login or name, _password(args))
    bar = ProgressBar(sys.stderr, f"importing {name} from {source.url}")

    async def work(store: MailStore, config: Config) -> int:
        options = _options(args, config)
        report = await import_pop3(store, name, source, options, lambda r: bar(r.done, r.total))
        bar.finish()
        print_import_report(name, report)
        return 0 if report.complete else 1

    return with_store(args, work)


def print_import_report(name: str, report: Pop3ImportReport) -> None:
    print(
        f"imported {report.imported} of {report.total} messages ({report.octets} octets)"
        f" into {name}"
    )
    print(f"  already imported before, skipped: {report.already}")
    print(f"  kept their source unique-id: {report.kept_uidl}")
    if report.no_uidl:
        print("  the source does not answer UIDL: every message got a new unique-id")
    if report.problems:
        print(f"problems ({len(report.problems)}):")
        for problem in report.problems:
            print(f"  {problem}")
    if report.stopped:
        print(f"stopped after {report.done} of {report.total}: {report.stopped}", file=sys.stderr)


def _import_users(args: argparse.Namespace, url: str) -> int:
    master = args.master_user is not None
    try:
        users = read_users(args.users, master=master)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SystemExit(f"popbox: {exc}") from None
    # Through a master user one password, the master's, serves every login (module docs
    # of pop3_users); otherwise each line of the file gives its own.
    template = _source(args, url, "-", _password(args) if master else "-")
    options = UsersOptions(concurrency=args.concurrency, logins_per_second=args.rate)

    async def work(store: MailStore, config: Config) -> int:
        imports = _options(args, config)
        summary = await import_users(
            store,
            users,
            template,
            imports,
            options,
            out=sys.stdout,
            progress_to=sys.stderr if sys.stderr.isatty() else None,
        )
        if args.report is not None:
            args.report.write_text(summary.to_json(), encoding="utf-8")
        return 0 if summary.all_complete else 1

    return with_store(args, work)


def verify_command(args: argparse.Namespace) -> int:
    """``popbox verify pop3 NAME URL``: the diff of the UIDL listings, exit 1 if any."""
    return _guarded(lambda: _verify(args))


def _verify(args: argparse.Namespace) -> int:
    source = _source(args, args.url, args.login or args.name, _password(args))

    async def work(store: MailStore, config: Config) -> int:
        del config
        report = await verify_pop3(store, args.name, source)
        for line in (*report.differences, *report.size_differences):
            print(line)
        for note in report.notes:
            print(f"note: {note}")
        passed = report.passed(exact_sizes=args.exact_sizes)
        verdict = "the same unique-ids" if passed else "DIFFERENT"
        print(
            f"{args.name}: {verdict}: source {report.source_count} messages,"
            f" popbox {report.popbox_count}; {len(report.differences)} unique-id"
            f" and {len(report.size_differences)} size differences"
        )
        return 0 if passed else 1

    return with_store(args, work)


def register(
    command: Callable[..., argparse.ArgumentParser],
    kind_command: Callable[..., argparse.ArgumentParser],
    imp: Any,
    sub: Any,
) -> None:
    """``import pop3`` under ``imp`` (import's kinds), ``verify pop3`` under ``sub``."""
    pop3 = kind_command("pop3", import_command, "import from a POP3 server, keeping UIDLs", imp)
    pop3.add_argument("target", nargs="+", metavar="ARG", help="NAME URL, or URL with --users")
    add_source_options(pop3)
    pop3.add_argument("--batch", type=int, default=100, help="messages per transaction")
    pop3.add_argument(
        "--ignore-quota", action="store_true", help="import even past the mailbox quota"
    )
    pop3.add_argument("--users", type=Path, metavar="FILE", help="CSV: name,login,password[_file]")
    pop3.add_argument("--concurrency", type=int, default=4, help="users imported at once")
    pop3.add_argument("--rate", type=float, default=5.0, help="source logins per second at most")
    pop3.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report")
    verify_sub = command(
        "verify", verify_command, "compare UIDLs with another server", sub
    ).add_subparsers(required=True, metavar="KIND")
    verify = kind_command(
        "pop3", verify_command, "compare a mailbox with a POP3 source", verify_sub
    )
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("url", metavar="URL")
    add_source_options(verify)
    verify.add_argument(
        "--exact-sizes", action="store_true", help="size differences fail too (exact sources)"
    )
