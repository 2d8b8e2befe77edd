"""Benchmark popbox against Dovecot side by side: same data, same machine, one run.

    .venv/bin/python bench/run.py --scenarios login,retr,biglist,idle --runs 3
    .venv/bin/python bench/run.py --quick          # smoke test: small data, short windows
    .venv/bin/python bench/run.py --store postgresql   # popbox on PostgreSQL as well

Provisions the same users and messages into both servers (see provision.py), starts
both from configurations in one temp dir, warms both up, then runs every scenario
against each server in turn (the order alternates between runs) and prints the
medians and the popbox/Dovecot ratios.  With ``--results FILE`` (default
bench/RESULTS.md unless --quick) the table is written between the markers in that
file, with the machine and the versions.  Must run as root (Dovecot's master needs it).

With ``--store postgresql`` a private PostgreSQL cluster is started beside them
(pgcluster.py) and a third server, popbox on that cluster with the same data, is
measured in the same runs; the table then sets it against Dovecot and against popbox on
SQLite, and its server CPU includes PostgreSQL's processes.

Fairness on a small machine: the client processes and the server share the cores, so
both servers are measured under identical conditions (same client, same data, same
number of client processes and server worker processes per core) and server CPU per
operation is reported next to each rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import clients

import payload
import pgcluster
import provision
import scenarios
import servers
from popbox.server.tls import load_or_create_certificate

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
TARGETS = {  # metric prefix -> (comparison, ratio) popbox/Dovecot must meet
    "login: logins/s": (">=", 1.5),
    "plain: MB/s": (">=", 1.0),
    "tls: MB/s": (">=", 0.8),
    "biglist": ("<=", 1.0),
    "idle: RSS per session": ("<=", 0.1),
}  # deliver has no target in the issue: reported for the record
# PostgreSQL mode: (metric part, what it is compared with, comparison, ratio).
PG_TARGETS = (
    ("login: logins/s", "dovecot", ">=", 1.0),
    (": MB/s", "dovecot", ">=", 1.0),
    ("login: logins/s", "popbox", ">=", 0.7),
    (": MB/s", "popbox", ">=", 0.7),
    ("biglist", "popbox", "<=", 2.0),
)
RETR_KINDS = ("r4k", "r100k", "r1m")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="login,retr,biglist,idle,deliver")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small data, short windows")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duration", type=float, help="seconds per timed window")
    parser.add_argument("--idle-sessions", type=int)
    parser.add_argument(
        "--retr-kinds", default=",".join(RETR_KINDS), help="message sizes for retr: r4k,..."
    )
    parser.add_argument(
        "--retr-concurrency", type=int, help="retr: connections per client process (4)"
    )
    parser.add_argument("--dovecot", choices=("tuned", "stock"), default="tuned")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: popbox on a private PostgreSQL too, beside popbox on SQLite",
    )
    parser.add_argument(
        "--directory",
        choices=("internal", "passwd-file"),
        default="internal",
        help="passwd-file: popbox checks logins against the passwd-file Dovecot is given",
    )
    parser.add_argument("--results", type=Path, help="file to write the table into")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    args.retr_kinds = tuple(k for k in args.retr_kinds.split(",") if k)
    unknown = set(args.retr_kinds) - set(RETR_KINDS)
    if unknown:
        parser.error(f"--retr-kinds: unknown {sorted(unknown)}; choose from {RETR_KINDS}")
    return args


def _settings(args: argparse.Namespace) -> tuple[scenarios.Settings, provision.Plan]:
    quick = args.quick
    m = payload.MAILBOXES
    login_users = payload.users_of(m["login"], 20 if quick else 200)
    retr_concurrency = args.retr_concurrency or (2 if quick else 4)
    retr_busy = 4 if quick else 16
    # One user (mailbox) per connection; the busy 4 KiB run needs more of them.
    clients = args.clients
    retr_users = {k: payload.users_of(m[k], retr_concurrency * clients) for k in RETR_KINDS}
    retr_users["r4k"] = payload.users_of(m["r4k"], max(retr_concurrency, retr_busy) * clients)
    retr_counts = {k: max(m[k].count // (10 if quick else 1), 2) for k in RETR_KINDS}
    big_count = 2_000 if quick else m["big"].count
    settings = scenarios.Settings(
        clients=args.clients,
        duration=args.duration or (1.0 if quick else 5.0),
        login_concurrency=50,
        retr_concurrency=retr_concurrency,
        retr_busy_concurrency=retr_busy,
        idle_sessions=args.idle_sessions or (200 if quick else 10_000),
        login_users=login_users,
        retr_users=retr_users,
        big_user=payload.users_of(m["big"], 1)[0],
        big_count=big_count,
        login_count=m["login"].count,
        retr_counts=retr_counts,
        deliver_users=payload.users_of(m["dlv"], 20),
        deliver_concurrency=8,
    )
    wanted = set(args.scenarios.split(","))
    plan: provision.Plan = [(m["login"], login_users, m["login"].count)]
    if "retr" in wanted:
        plan += [(m[k], retr_users[k], retr_counts[k]) for k in args.retr_kinds]
    if "biglist" in wanted:
        plan.append((m["big"], [settings.big_user], big_count))
    if "deliver" in wanted:
        plan.append((m["dlv"], settings.deliver_users, 0))
    return settings, plan


def _measure(
    name: str, server: servers._Server, s: scenarios.Settings, kinds: tuple[str, ...]
) -> list:
    if name == "login":
        return scenarios.login(server, s)
    if name == "retr":
        found = []
        for tls in (False, True):
            for kind in kinds:
                found += scenarios.retr(server, s, kind, tls=tls)
            if "r4k" in kinds:  # small RETRs are where the load decides: measure two
                found += scenarios.retr(server, s, "r4k", tls=tls, busy=True)
        return found
    if name == "biglist":
        return scenarios.biglist(server, s)
    if name == "idle":
        return scenarios.idle(server, s)
    if name == "deliver":
        return scenarios.deliver(server, s)
    raise SystemExit(f"unknown scenario {name!r}")


def _warm_up(
    pair: list[servers._Server], s: scenarios.Settings, wanted: set[str], kinds: tuple[str, ...]
) -> None:
    # First logins build Dovecot's indexes and fill both servers' caches; not measured.
    short = dataclasses.replace(s, duration=1.0)
    for server in pair:
        scenarios.login(server, short)
        if "retr" in wanted:
            for kind in kinds:
                scenarios.retr(server, short, kind, tls=False)
        if "biglist" in wanted:
            scenarios.biglist(server, short)


def _machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split(":")[1].strip()
    return [f"nproc {os.cpu_count()}", f"CPU {cpu}", f"memory {mem}", f"Linux {platform.release()}"]


Medians = dict[str, dict[str, tuple[float, str, str]]]


def _table(medians: Medians, order: list[str]) -> list[str]:
    """popbox (SQLite) against Dovecot; in the PostgreSQL mode, then that mode's table."""
    if "popbox-pg" in medians:
        sqlite = {who: found for who, found in medians.items() if who != "popbox-pg"}
        pg = _pg_table(medians, order)
        return [*_table(sqlite, order), "", "PostgreSQL mode (`--store postgresql`):", "", *pg]
    lines = [
        "| measurement | popbox | Dovecot | popbox/Dovecot | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name in order:
        pop, unit, better = medians["popbox"][name]
        dov = medians["dovecot"][name][0]
        ratio = pop / dov if dov else float("inf")
        target = next((t for key, t in TARGETS.items() if key in name), None)
        goal, met = "", ""
        if target is not None:
            goal = f"{target[0]} {target[1]}"
            met = (
                "yes" if (ratio >= target[1] if target[0] == ">=" else ratio <= target[1]) else "NO"
            )
        lines.append(
            f"| {name} | {pop:.4g} {unit} | {dov:.4g} {unit} | {ratio:.3g} | {goal} | {met} |"
        )
        del better
    return lines


def _met(ratio: float, comparison: str, bar: float) -> bool:
    return ratio >= bar if comparison == ">=" else ratio <= bar


def _pg_table(medians: Medians, order: list[str]) -> list[str]:
    lines = [
        (
            "| measurement | popbox on PostgreSQL | Dovecot | PG/Dovecot "
            "| popbox on SQLite | PG/SQLite | target | met |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        pg, unit, _ = medians["popbox-pg"][name]
        others = {who: medians[who][name][0] for who in ("dovecot", "popbox")}
        ratios = {who: pg / value if value else float("inf") for who, value in others.items()}
        goals, verdicts = [], []
        for part, against, comparison, bar in PG_TARGETS:
            if part in name:
                label = "Dovecot" if against == "dovecot" else "SQLite"
                goals.append(f"{comparison} {bar} {label}")
                verdicts.append(_met(ratios[against], comparison, bar))
        met = ("yes" if all(verdicts) else "NO") if verdicts else ""
        lines.append(
            f"| {name} | {pg:.4g} {unit} | {others['dovecot']:.4g} {unit} "
            f"| {ratios['dovecot']:.3g} | {others['popbox']:.4g} {unit} "
            f"| {ratios['popbox']:.3g} | {', '.join(goals)} | {met} |"
        )
    return lines


def _write_results(path: Path, body: list[str]) -> None:
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n" + "\n".join(body) + f"\n{END}{tail}")


def _provision(
    args: argparse.Namespace,
    plan: provision.Plan,
    root: Path,
    database: pgcluster.PostgresCluster | None,
) -> list[servers._Server]:
    began = time.monotonic()
    cert, key = load_or_create_certificate("", "", root / "tls")
    for path in (cert, key):
        path.chmod(0o644)
    phc = provision.hashes(u for _, users, _ in plan for u in users)
    provision.provision_popbox(root / "popbox-data", plan, phc)
    passwd = provision.provision_dovecot(root, plan, phc)
    shared = passwd if args.directory == "passwd-file" else None
    popboxes = [
        servers.PopboxServer(
            root, root / "popbox-data", cert, key, args.workers, passwd_file=shared
        )
    ]
    if database is not None:
        provision.provision_popbox(root / "popbox-pg-data", plan, phc, database.dsn)
        popboxes.append(
            servers.PopboxServer(
                root,
                root / "popbox-pg-data",
                cert,
                key,
                args.workers,
                database=database,
                passwd_file=shared,
            )
        )
    print(f"provisioned in {time.monotonic() - began:.1f} s under {root}", flush=True)
    return [
        *popboxes,
        servers.DovecotServer(root, passwd, cert, key, tuned=args.dovecot == "tuned"),
    ]


def _run_all(
    pair: list[servers._Server],
    wanted: list[str],
    runs: int,
    settings: scenarios.Settings,
    kinds: tuple[str, ...],
) -> tuple[Medians, list[str]]:
    samples: dict[str, dict[str, list[float]]] = {server.name: {} for server in pair}
    units: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for name in wanted:
        for run in range(runs):
            for server in pair if run % 2 == 0 else pair[::-1]:
                for m in _measure(name, server, settings, kinds):
                    samples[server.name].setdefault(m.name, []).append(m.value)
                    units[m.name] = (m.unit, m.better)
                    if m.name not in order:
                        order.append(m.name)
                    line = f"  run {run + 1} {server.name:8} {m.name}: {m.value:.4g} {m.unit}"
                    print(line, flush=True)
    medians = {
        who: {n: (statistics.median(v), *units[n]) for n, v in found.items()}
        for who, found in samples.items()
    }
    return medians, order


def _report(
    args: argparse.Namespace,
    pair: list[servers._Server],
    settings: scenarios.Settings,
    medians: Medians,
    order: list[str],
) -> list[str]:
    *popboxes, dov = pair
    pop = popboxes[-1]
    quick = " --quick" if args.quick else ""
    store = " --store postgresql" if args.store == "postgresql" else ""
    directory = " --directory passwd-file" if args.directory == "passwd-file" else ""
    command = (
        f"bench/run.py --scenarios {args.scenarios} --runs {args.runs}{quick}{store}{directory}"
    )
    database = (
        [
            (
                "- popbox on PostgreSQL: a private cluster on the same machine (fsync on, "
                "synchronous_commit on); its CPU time is counted as popbox's"
            )
        ]
        if store
        else []
    )
    return [
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: medians of {args.runs} runs.",
        "",
        "- machine: " + ", ".join(_machine()),
        f"- {pop.version()}, {getattr(pop, 'workers', 1)} worker process(es)",
        *database,
        (
            f"- {dov.version()} ({args.dovecot} settings), same certificate, "
            f"argon2id {provision.BENCH_ARGON2} for both"
        ),
        (
            "- popbox logins checked against "
            + ("the passwd-file Dovecot reads" if args.directory == "passwd-file" else "its store")
        ),
        (
            f"- {settings.clients} client processes, {settings.duration:g} s per window, "
            f"{settings.idle_sessions} idle sessions; retr over "
            f"{settings.retr_concurrency * settings.clients} connections, one mailbox each"
        ),
        "",
        *_table(medians, order),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    why = servers.available() or (pgcluster.available() if args.store == "postgresql" else None)
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    clients.raise_fd_limit()
    # SIGTERM (timeout, a CI runner) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = [w for w in args.scenarios.split(",") if w]
    settings, plan = _settings(args)
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="popbox-bench-", dir=base))
    root.chmod(0o755)  # Dovecot's unprivileged processes must reach their files
    pair: list[servers._Server] = []
    database = None
    try:
        if args.store == "postgresql":
            database = pgcluster.PostgresCluster(root)
            database.start()
        pair = _provision(args, plan, root, database)
        for server in pair:
            server.start()
        _warm_up(pair, settings, set(wanted), args.retr_kinds)
        medians, order = _run_all(pair, wanted, args.runs, settings, args.retr_kinds)
        body = _report(args, pair, settings, medians, order)
        print("\n".join(body))
        results = args.results or (None if args.quick else RESULTS)
        if results is not None:
            _write_results(results, body)
            print(f"written to {results}")
    finally:
        for server in pair:
            if server.stop():
                print(f"bench: {server.name} left processes behind; killed", file=sys.stderr)
        if database is not None:
            database.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
