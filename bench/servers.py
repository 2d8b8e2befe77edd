"""The two servers under test, each started from a configuration written into a temp dir.

``PopboxServer`` runs the real ``popbox serve --config FILE``; ``DovecotServer`` runs
Debian's Dovecot as ``dovecot -F -c FILE`` with every path (base_dir, state_dir, logs,
Maildirs, passwd-file) inside the same temp dir, on other 127.0.0.1 ports, so the
machine's own Dovecot, if any, is never touched.  Both present the same certificate.

``stop`` sends SIGTERM to the process the bench started, then SIGKILLs any member of
its tree that outlived it (recorded before the stop by pid and start time), so a run
never leaves a server behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import procs
import provision

if TYPE_CHECKING:
    from pathlib import Path

    from pgcluster import PostgresCluster as Database

__all__ = ["DovecotServer", "PopboxServer", "free_port"]

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_greeting(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(100).startswith(b"+OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not greet on port {port}: {_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


class _Server:
    name = "?"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far, every process of its tree included."""
        return procs.cpu_seconds(self.pid)

    def _spawn(self, argv: list[str]) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _wait_for_greeting(self.port, self.proc, self.log)

    def stop(self) -> list[int]:
        """Stop the whole tree; returns the pids that had to be killed."""
        if self.proc is None:
            return []
        members = procs.identities(procs.tree(self.proc.pid))
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        members.pop(self.proc.pid, None)
        self.proc = None
        return procs.kill_tree(members)


class PopboxServer(_Server):
    name = "popbox"

    def __init__(  # noqa: PLR0913 - one server's whole configuration
        self,
        root: Path,
        data_dir: Path,
        cert: Path,
        key: Path,
        workers: int,
        *,
        database: Database | None = None,
        passwd_file: Path | None = None,
        extra_config: str = "",
    ) -> None:
        """popbox on SQLite in ``data_dir``, or on PostgreSQL when ``database`` is given.

        ``passwd_file``: logins are checked against that Dovecot passwd-file (the one
        Dovecot is given) instead of the store's own users, whose mailboxes still hold
        the mail.  ``extra_config`` is TOML appended to the file (bench/ldap_login.py's
        ``[[directory]]``).
        """
        if database is not None:
            self.name = "popbox-pg"
        super().__init__(root)
        self.database = database
        self.lmtp_port = free_port()
        self.config = root / f"{self.name}.toml"
        server_section = f"\n[server]\nworkers = {workers}\n" if _has_workers() else ""
        self.workers = workers if server_section else 1
        storage = (
            f'[storage]\nbackend = "postgresql"\ndsn = "{database.dsn}"\n'
            if database is not None
            else ""
        )
        directory = (
            f'[[directory]]\nname = "bench-passwd-file"\ntype = "passwd-file"\n'
            f'path = "{passwd_file}"\n'
            if passwd_file is not None
            else ""
        )
        self.config.write_text(
            f'data_dir = "{data_dir}"\n'
            "[pop3]\n"
            f'listen = ["127.0.0.1:{self.port}"]\n'
            f'tls_listen = ["127.0.0.1:{self.tls_port}"]\n'
            'login_type = "plaintext_login"\n'
            "authenticated_timeout = 3600\n"
            "[tls]\n"
            f'cert_file = "{cert}"\nkey_file = "{key}"\n'
            "[lmtp]\n"
            f'listen = ["127.0.0.1:{self.lmtp_port}"]\n'
            + storage
            + server_section
            + _argon2_section()
            + directory
            + extra_config
        )

    def cpu_seconds(self) -> float:
        # The database serves popbox alone and runs on the same cores: its work is popbox's.
        own = super().cpu_seconds()
        return own if self.database is None else own + self.database.cpu_seconds()

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "popbox", "serve", "--config", str(self.config)])

    def version(self) -> str:
        import popbox  # noqa: PLC0415 - the installed version, read when reported
        import popbox.protocol.connection as core  # noqa: PLC0415

        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            loop = "asyncio"
        else:
            loop = f"uvloop {uvloop.__version__}"
        # scripts/compile's build (on PYTHONPATH) has the command cycle compiled by mypyc.
        build = "mypyc-compiled" if (core.__file__ or "").endswith(".so") else "pure Python"
        return f"popbox {popbox.__version__} ({build}, Python {sys.version.split()[0]}, {loop})"


def _argon2_section() -> str:
    # The provisioned hashes' cost as the configured one: else popbox pads every login to
    # its default cost and rehashes at the first (a popbox without the settings: nothing).
    from popbox.config import AuthConfig  # noqa: PLC0415

    if "argon2_time_cost" not in {f.name for f in dataclasses.fields(AuthConfig)}:
        return ""
    cost = provision.BENCH_ARGON2
    return (
        f"[auth]\nargon2_time_cost = {cost['time_cost']}\n"
        f"argon2_memory_kib = {cost['memory_cost']}\nargon2_parallelism = {cost['parallelism']}\n"
    )


def _has_workers() -> bool:
    from popbox.config import Config  # noqa: PLC0415

    return "server" in {f.name for f in dataclasses.fields(Config)}


class DovecotServer(_Server):
    name = "dovecot"

    def __init__(  # noqa: PLR0913 - one server's whole configuration
        self,
        root: Path,
        passwd: Path,
        cert: Path,
        key: Path,
        *,
        tuned: bool,
        passdb: str | None = None,
    ) -> None:
        """Dovecot on ``passwd`` (a passwd-file), or on the ``passdb {...}`` block given."""
        super().__init__(root)
        passdb = passdb or f"passdb {{\n  driver = passwd-file\n  args = {passwd}\n}}"
        self.config = root / "dovecot.conf"
        self.lmtp_port = free_port()
        (root / "dovecot-state").mkdir(exist_ok=True)
        login = (
            # Dovecot's documented high-performance login mode and reused mail processes.
            "  service_count = 0\n  process_min_avail = 2\n  client_limit = 20000\n"
            if tuned
            else ""
        )
        pop3 = "  service_count = 0\n" if tuned else ""
        self.config.write_text(f"""
instance_name = popbox-bench-dovecot
base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
protocols = pop3 lmtp
postmaster_address = postmaster@bench.example
# LMTP recipients are user@bench.example; popbox also delivers by the local part.
auth_username_format = %Ln
listen = 127.0.0.1
log_path = {self.log}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain
default_process_limit = 20000
default_client_limit = 40000
default_vsz_limit = 1G
mail_location = maildir:~/Maildir
first_valid_uid = 1
{passdb}
userdb {{
  driver = static
  args = uid={65534} gid={65534} home={root}/mail/%u
}}
protocol pop3 {{
  mail_max_userip_connections = 100000
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
{login}}}
service pop3 {{
  process_limit = 20000
{pop3}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
""")

    def start(self) -> None:
        dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self._spawn([dovecot, "-F", "-c", str(self.config)])

    @staticmethod
    def version() -> str:
        out = subprocess.run(
            ["dovecot", "--version"], capture_output=True, text=True, check=False, timeout=30
        )
        return f"Dovecot {out.stdout.strip()}"


def available() -> str | None:
    """Why Dovecot cannot be benchmarked here, or None when it can."""
    if shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"):  # noqa: PTH110
        return "dovecot is not installed (Debian package dovecot-pop3d)"
    if os.geteuid() != 0:
        return "Dovecot's master process must start as root"
    return None
