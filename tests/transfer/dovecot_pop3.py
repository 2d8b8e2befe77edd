"""A real Dovecot POP3 server (Debian ``dovecot-pop3d``) serving Maildirs, for import tests.

``DovecotPop3.start(users, tls)`` writes a Maildir per user, a passwd-file, a master
user (``admin``, Dovecot's ``user*master`` separator ``*``) and a config in a temp dir
(not pytest's tmp_path: Dovecot's mail processes run as "nobody" and must read it), and
starts ``dovecot -F -c FILE`` on ephemeral 127.0.0.1 ports: ``port`` (STLS offered) and
``tls_port`` (implicit TLS).  ``pop3_uidl_format`` is non-numeric (``%08Xv%08Xu``), so
a kept unique-id cannot pass for one popbox would give out itself.

``corpus`` makes messages a migration meets: dot-lines, 8-bit bodies, long lines.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from popbox_servers import TlsFiles

MAIL_UID = 65534  # Dovecot's mail processes must not run as root: "nobody"
UIDL_FORMAT = "%08Xv%08Xu"
MASTER, MASTER_PASSWORD = "admin", "master secret"
TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def corpus(count: int) -> list[bytes]:
    """``count`` messages with LF line ends, as a Maildir holds them (Dovecot adds CR)."""
    messages = []
    for n in range(count):
        head = (
            f"From: sender{n}@example.org\nTo: alice@example.org\nSubject: message {n}\n"
            f"Date: Mon, 2 Nov 2026 10:{n % 60:02d}:00 +0000\nMessage-ID: <{n}@example.org>\n\n"
        ).encode()
        kind = n % 4
        if kind == 0:
            body = b".\n..\n.leading dot\n...three\nend.\n.\n"  # RFC 1939 s3 byte-stuffing
        elif kind == 1:
            body = "Grüße, naïve café\n".encode() + bytes(range(0x80, 0x100)) + b"\n"
        elif kind == 2:
            body = b"x" * (5000 + n) + b"\n" + b".y" * 3000 + b"\n"  # long lines
        else:
            body = f"plain body {n}\n".encode()
        messages.append(head + body)
    return messages


def big_message(size: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\n"
    head = b"From: big@example.org\nSubject: big\n\n"
    return head + line * (size // len(line)) + b".\n..last\n"


class DovecotPop3:
    """See module docs; ``stop()`` kills the server and removes its directory."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes], port: int, tls_port: int):
        self.root = root
        self.process = process
        self.port = port
        self.tls_port = tls_port

    @classmethod
    def start(
        cls,
        users: Mapping[str, tuple[str, list[bytes]]],
        tls: TlsFiles,
        *,
        unread: int = 0,
        uidl_format: str = UIDL_FORMAT,
    ) -> DovecotPop3:
        """The last ``unread`` messages of each user wait in ``new/``, as the newest do."""
        dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not Path(dovecot).exists() or os.geteuid() != 0:
            pytest.skip("needs Debian's dovecot-pop3d and root (Dovecot's master starts as root)")
        root = Path(tempfile.mkdtemp(prefix="popbox-dovecot-"))
        root.chmod(0o755)
        lines = []
        for name, (password, messages) in users.items():
            _write_maildir(root / "mail" / name / "Maildir", messages, unread)
            lines.append(f"{name}:{{PLAIN}}{password}\n")
        for directory, _, files in os.walk(root / "mail"):
            os.chown(directory, MAIL_UID, MAIL_UID)
            for file_name in files:
                os.chown(Path(directory) / file_name, MAIL_UID, MAIL_UID)
        (root / "passwd").write_text("".join(lines))
        (root / "master-passwd").write_text(f"{MASTER}:{{PLAIN}}{MASTER_PASSWORD}\n")
        port, tls_port = free_port(), free_port()
        config = root / "dovecot.conf"
        config.write_text(_config(root, port, tls_port, tls, uidl_format))
        process = subprocess.Popen(
            [dovecot, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = cls(root, process, port, tls_port)
        server._wait()
        return server

    def _wait(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "dovecot.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"dovecot exited at start: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if sock.recv(100).startswith(b"+OK"):
                        return
            except OSError:
                time.sleep(0.1)
        pytest.fail("dovecot did not greet")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, *, implicit_tls: bool = True) -> str:
        if implicit_tls:
            return f"pop3s://localhost:{self.tls_port}"
        return f"pop3://localhost:{self.port}"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"


def _write_maildir(maildir: Path, messages: list[bytes], unread: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n, text in enumerate(messages):
        name = f"{1_700_000_000 + n}.M{n}P1.test,S={len(text)}"
        if n < len(messages) - unread:
            (maildir / "cur" / f"{name}:2,S").write_bytes(text)
        else:
            (maildir / "new" / name).write_bytes(text)


def _config(root: Path, port: int, tls_port: int, tls: TlsFiles, uidl_format: str) -> str:
    return f"""
instance_name = popbox-test-dovecot-{port}
base_dir = {root}/run
state_dir = {root}/state
protocols = pop3
listen = 127.0.0.1
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{tls.cert_file}
ssl_key = <{tls.key_file}
disable_plaintext_auth = yes
auth_mechanisms = plain
auth_master_user_separator = *
mail_location = maildir:~/Maildir
pop3_uidl_format = {uidl_format}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {root}/master-passwd
  master = yes
}}
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={root}/mail/%u
}}
protocol pop3 {{
  mail_max_userip_connections = 1000
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def raw_listing(port: int, user: str, password: str, ca_file: Path, *, tls: bool = True) -> dict:
    """UIDL, LIST and every RETR answer exactly as the server sends them (wire bytes)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    if tls:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    reader = sock.makefile("rb")

    def command(line: str, *, multi: bool) -> bytes:
        sock.sendall(line.encode() + b"\r\n")
        status = reader.readline()
        assert status.startswith(b"+OK"), (line, status)
        if not multi:
            return status
        out = []
        while (got := reader.readline()) != b".\r\n":
            assert got, "connection closed inside a multi-line answer"
            out.append(got)
        return b"".join(out)

    try:
        reader.readline()
        command(f"USER {user}", multi=False)
        command(f"PASS {password}", multi=False)
        uidl = command("UIDL", multi=True).split(b"\r\n")[:-1]
        sizes = command("LIST", multi=True).split(b"\r\n")[:-1]
        bodies = [command(f"RETR {n + 1}", multi=True) for n in range(len(sizes))]
        command("QUIT", multi=False)
    finally:
        reader.close()
        sock.close()
    return {"uidl": uidl, "list": sizes, "retr": bodies}
