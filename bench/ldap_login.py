"""Benchmark LDAP logins: popbox and Dovecot against the same slapd, side by side.

    .venv/bin/python bench/ldap_login.py --runs 3
    .venv/bin/python bench/ldap_login.py --quick       # smoke test: short windows

One OpenLDAP slapd (the test suite's, ``tests/directory/ldap/slapd.py``) holds the
benchmark's login users with ``{SSHA}`` passwords.  popbox reads it through a
``[[directory]]`` of type ldap, Dovecot through ``passdb ldap`` with ``auth_bind = yes``:
both search with the same service account over StartTLS and then bind as the user, the
way Active Directory must be used.  Mailboxes are provisioned as for ``run.py``.  The
login scenario (USER, PASS, STAT, QUIT) runs against each server in turn, alternating
the order between runs; the table gives the medians, the popbox/Dovecot ratios (the
issue's targets: logins/s at least 1.0x, p99 latency no worse) and slapd's CPU time
per login for each, since a server that asks the directory more costs the directory
more.  That scenario keeps 50 logins in flight, so it runs each server at its limit,
where latency is mostly queueing; the same logins are then started at one fixed rate
for both servers (``--paced-share`` of Dovecot's logins/s, an open loop), and their
p50 and p99 are the latency a user sees on a busy server that is not overloaded.
Must run as root (Dovecot's master needs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import argon2
import clients
import trustme

import payload
import procs
import provision
import scenarios
import servers

# The slapd helper lives with the LDAP tests; the benchmark starts the same server.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "directory" / "ldap"))

from slapd import BASE_DN, SERVICE_DN, SERVICE_PASSWORD, LdapUser, Slapd

FILTER = "(&(objectClass=inetOrgPerson)(uid=%n))"
TARGETS = {"login: logins/s": (">=", 1.0), "login: p99 latency": ("<=", 1.0)}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer users, short windows")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=50, help="logins in flight")
    parser.add_argument("--duration", type=float, help="seconds per timed window")
    parser.add_argument("--pool-size", type=int, default=16, help="popbox's LDAP slots/worker")
    parser.add_argument(
        "--paced-share",
        type=float,
        default=0.7,
        help="the paced logins' rate, as a share of Dovecot's saturated logins/s",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> scenarios.Settings:
    kind = payload.MAILBOXES["login"]
    return scenarios.Settings(
        clients=args.clients,
        duration=args.duration or (1.0 if args.quick else 5.0),
        login_concurrency=args.concurrency,
        retr_concurrency=0,
        retr_busy_concurrency=0,
        idle_sessions=0,
        login_users=payload.users_of(kind, 20 if args.quick else 200),
        retr_users={},
        big_user="",
        big_count=0,
        login_count=kind.count,
        retr_counts={},
        deliver_users=[],
        deliver_concurrency=0,
    )


def _uri(server: Slapd) -> str:
    # StartTLS on the plain port: Dovecot 2.3 applies tls_ca_cert_file only with
    # "tls = yes" (for ldaps:// it would need the CA in libldap's own ldap.conf).  The
    # address, not "localhost": libldap checks the certificate against the name a
    # reverse lookup of the address gives, which is the machine's own name here.
    return server.uri


def _popbox_directory(server: Slapd, ca: Path, pool_size: int) -> str:
    return f"""
[[directory]]
name = "ldap"
type = "ldap"
uris = ["{_uri(server)}"]
starttls = true
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
base_dn = "ou=people,{BASE_DN}"
filter = "{FILTER}"
pool_size = {pool_size}
"""


def _dovecot_passdb(root: Path, server: Slapd, ca: Path) -> str:
    conf = root / "dovecot-ldap.conf.ext"
    conf.write_text(
        f"uris = {_uri(server)}\ntls = yes\ntls_ca_cert_file = {ca}\ntls_require_cert = hard\n"
        f"dn = {SERVICE_DN}\ndnpass = {SERVICE_PASSWORD}\nauth_bind = yes\n"
        f"base = ou=people,{BASE_DN}\nscope = subtree\npass_filter = {FILTER}\n"
        "pass_attrs = uid=user\n"
    )
    conf.chmod(0o644)
    return f"passdb {{\n  driver = ldap\n  args = {conf}\n}}"


def _measure(server: servers._Server, slapd: Slapd, s: scenarios.Settings) -> dict[str, float]:
    before = procs.cpu_seconds(slapd.pid)
    found = {m.name: m.value for m in scenarios.login(server, s)}
    logins = found["login: logins/s"] * s.duration
    found["login: slapd CPU per login"] = (
        (procs.cpu_seconds(slapd.pid) - before) * 1000 / max(logins, 1)
    )
    return found


def _table(medians: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| measurement | popbox | Dovecot | popbox/Dovecot | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, pop in medians["popbox"].items():
        dov = medians["dovecot"][name]
        ratio = pop / dov if dov else float("inf")
        unit = "/s" if name.endswith("/s") else "ms"
        goal, met = "", ""
        target = TARGETS.get(name) or (TARGETS["login: p99 latency"] if " p99 " in name else None)
        if target is not None:
            comparison, bar = target
            goal = f"{comparison} {bar}"
            ok = ratio >= bar if comparison == ">=" else ratio <= bar
            met = "yes" if ok else "NO"
        lines.append(
            f"| {name} | {pop:.4g} {unit} | {dov:.4g} {unit} | {ratio:.3g} | {goal} | {met} |"
        )
    return lines


@dataclass(frozen=True, slots=True)
class _Tls:
    """What Slapd.start needs of the test suite's TlsFiles."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _start(args: argparse.Namespace, root: Path, s: scenarios.Settings):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    (root / "tls").mkdir()
    files = _Tls(root / "tls" / "ca.pem", root / "tls" / "cert.pem", root / "tls" / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    for path in (files.ca_file, files.cert_file, files.key_file):
        path.chmod(0o644)
    users = {
        user: LdapUser(
            user, payload.password(user), f"{user}@bench.example", user, f"{user}@bench.example"
        )
        for user in s.login_users
    }
    slapd = Slapd.start(root / "slapd", files, users)
    plan: provision.Plan = [(payload.MAILBOXES["login"], s.login_users, s.login_count)]
    # The stores' own hashes are of another password: a login that works went through
    # LDAP, whatever else either server would have consulted.
    hasher = argon2.PasswordHasher(type=argon2.Type.ID, **provision.BENCH_ARGON2)
    phc = {user: hasher.hash("not " + payload.password(user)) for user in s.login_users}
    provision.provision_popbox(root / "popbox-data", plan, phc)
    passwd = provision.provision_dovecot(root, plan, phc)
    extra = _popbox_directory(slapd, files.ca_file, args.pool_size)
    pair = [
        servers.PopboxServer(
            root,
            root / "popbox-data",
            files.cert_file,
            files.key_file,
            args.workers,
            extra_config=extra,
        ),
        servers.DovecotServer(
            root,
            passwd,
            files.cert_file,
            files.key_file,
            tuned=True,
            passdb=_dovecot_passdb(root, slapd, files.ca_file),
        ),
    ]
    return slapd, pair


def _run(
    pair: list[servers._Server],
    slapd: Slapd,
    settings: scenarios.Settings,
    runs: int,
    paced_share: float,
) -> dict[str, dict[str, float]]:
    warm = dataclasses.replace(settings, duration=1.0)
    for server in pair:  # connections, pools and caches filled; not measured
        scenarios.login(server, warm)
    samples: dict[str, dict[str, list[float]]] = {server.name: {} for server in pair}
    for run in range(runs):
        for server in pair if run % 2 == 0 else pair[::-1]:
            for name, value in _measure(server, slapd, settings).items():
                samples[server.name].setdefault(name, []).append(value)
                print(f"  run {run + 1} {server.name:8} {name}: {value:.4g}", flush=True)
    medians = {
        who: {name: statistics.median(values) for name, values in found.items()}
        for who, found in samples.items()
    }
    # The same offered load for both, below either's limit: a share of Dovecot's rate.
    rate = round(medians["dovecot"]["login: logins/s"] * paced_share, -1)
    paced: dict[str, dict[str, list[float]]] = {server.name: {} for server in pair}
    for run in range(runs):
        for server in pair if run % 2 == 0 else pair[::-1]:
            for m in scenarios.paced_login(server, settings, rate):
                paced[server.name].setdefault(m.name, []).append(m.value)
                print(f"  run {run + 1} {server.name:8} {m.name}: {m.value:.4g}", flush=True)
    for who, found in paced.items():
        medians[who].update({name: statistics.median(values) for name, values in found.items()})
    return medians


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if why := servers.available():
        print(f"bench: {why}", file=sys.stderr)
        return 2
    clients.raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = _settings(args)
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="popbox-bench-ldap-", dir=base))
    root.chmod(0o755)  # Dovecot's unprivileged processes must reach their files
    slapd: Slapd | None = None
    pair: list[servers._Server] = []
    try:
        slapd, pair = _start(args, root, settings)
        for server in pair:
            server.start()
        medians = _run(pair, slapd, settings, args.runs, args.paced_share)
        print(
            f"\nLDAP logins, {time.strftime('%Y-%m-%d')}, `bench/ldap_login.py"
            f"{' --quick' if args.quick else ''} --runs {args.runs}`: medians; "
            f"{settings.clients} client processes, {settings.login_concurrency} in flight, "
            f"{settings.duration:g} s windows, {len(settings.login_users)} users; "
            f"{pair[0].version()}, {pair[1].version()}, one slapd, StartTLS\n"
        )
        print("\n".join(_table(medians)))
    finally:
        for server in pair:
            if server.stop():
                print(f"bench: {server.name} left processes behind; killed", file=sys.stderr)
        if slapd is not None:
            slapd.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
