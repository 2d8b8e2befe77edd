"""Benchmark ``popbox import pop3`` against a plain RETR loop from the same Dovecot.

    .venv/bin/python bench/import_pop3.py --messages 5000 --size 20000 --runs 3
    .venv/bin/python bench/import_pop3.py --messages 1 --size 52428800 --runs 1  # 50 MiB

One Dovecot (``servers.DovecotServer``) serves a Maildir of ``--messages`` messages of
about ``--size`` octets over implicit TLS.  Each run times, in alternating order:

* the raw loop: one TLS connection, USER/PASS, then RETR 1..N one at a time, reading
  each answer to its terminator and dropping it (the fastest a client can collect, and
  the ceiling of any importer that retrieves one message at a time);
* the import: ``popbox import pop3`` into an empty SQLite store, the whole command
  (start-up, UIDL, LIST, RETR, storing, commit), with the child's peak RSS.

Prints messages/s, MB/s, the import/raw ratio (the issue's target: at least 0.8) and
the import's peak RSS.  Must run as root (Dovecot's master process needs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import servers
from popbox.server.tls import load_or_create_certificate
from popbox.store import open_store

USER, PASSWORD = "mover", "bench-password"
MAIL_UID = 65534


def _maildir(root: Path, count: int, size: int) -> None:
    maildir = root / "mail" / USER / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopq.\n"
    for n in range(count):
        head = f"From: a@example.org\nSubject: bench {n}\nMessage-ID: <{n}@bench>\n\n".encode()
        text = head + line * max(1, (size - len(head)) // len(line))
        crlf = len(text) + text.count(b"\n")
        (maildir / "cur" / f"{1_700_000_000 + n}.M{n}P1.b,S={len(text)},W={crlf}:2,").write_bytes(
            text
        )
    for directory, _, files in os.walk(root / "mail"):
        os.chown(directory, MAIL_UID, MAIL_UID)
        for name in files:
            os.chown(Path(directory) / name, MAIL_UID, MAIL_UID)


def raw_loop(port: int, count: int) -> tuple[float, int]:
    """Seconds and octets for RETR 1..count over one TLS connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.perf_counter()
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60)) as sock:
        buffer = bytearray()

        def until(end: bytes) -> bytes:
            searched = 0
            while (at := buffer.find(end, searched)) < 0:
                searched = max(0, len(buffer) - len(end) + 1)
                chunk = sock.recv(262144)
                if not chunk:
                    raise RuntimeError("the source closed the connection")
                buffer.extend(chunk)
            got = bytes(buffer[: at + len(end)])
            del buffer[: at + len(end)]
            return got

        until(b"\r\n")
        for line in (f"USER {USER}", f"PASS {PASSWORD}"):
            sock.sendall(line.encode() + b"\r\n")
            assert until(b"\r\n").startswith(b"+OK")
        octets = 0
        for n in range(1, count + 1):
            sock.sendall(b"RETR %d\r\n" % n)
            octets += len(until(b"\r\n.\r\n"))
        sock.sendall(b"QUIT\r\n")
    return time.perf_counter() - started, octets


def run_import(root: Path, port: int, run: int) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one ``popbox import pop3`` into a fresh store."""
    data = root / f"popbox-{run}"

    async def add_user() -> None:
        store = open_store("sqlite", data_dir=data, dsn="")
        await store.open()
        await store.add_user(USER, {})
        await store.close()

    data.mkdir()
    asyncio.run(add_user())
    config = data / "popbox.toml"
    config.write_text(f'data_dir = "{data}"\n')
    command = [str(Path(sys.executable).parent / "popbox"), "import", "pop3", "--config"]
    command += [str(config), USER, f"pop3s://localhost:{port}", "--insecure", "--password-stdin"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(PASSWORD.encode() + b"\n")
    child.stdin.close()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    assert child.stdout is not None
    output = child.stdout.read().decode()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"popbox import pop3 failed: {output}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=20000, help="octets per message, about")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if (why := servers.available()) is not None:
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="popbox-import-bench-"))
    root.chmod(0o755)
    cert, key = load_or_create_certificate("", "", root / "tls")
    _maildir(root, args.messages, args.size)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    dovecot = servers.DovecotServer(root, root / "passwd", cert, key, tuned=False)
    dovecot.start()
    raw: list[float] = []
    imported: list[float] = []
    rss: list[int] = []
    octets = 0
    try:
        raw_loop(dovecot.tls_port, args.messages)  # warm Dovecot's index and the page cache
        for run in range(args.runs):
            for which in ("raw", "import") if run % 2 == 0 else ("import", "raw"):
                if which == "raw":
                    seconds, octets = raw_loop(dovecot.tls_port, args.messages)
                    raw.append(seconds)
                else:
                    seconds, peak = run_import(root, dovecot.tls_port, run)
                    imported.append(seconds)
                    rss.append(peak)
                print(f"  run {run + 1} {which:6}: {seconds:.2f} s", flush=True)
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)
    _print(args, octets, statistics.median(raw), statistics.median(imported), max(rss))
    return 0


def _print(args: argparse.Namespace, octets: int, raw: float, imported: float, rss: int) -> None:
    megabytes = octets / 1e6
    print(f"\n{args.messages} messages, {megabytes:.1f} MB over TLS from Dovecot (medians)")
    print("| | messages/s | MB/s |")
    print("|---|---|---|")
    print(f"| plain RETR loop | {args.messages / raw:.0f} | {megabytes / raw:.1f} |")
    print(f"| popbox import pop3 | {args.messages / imported:.0f} | {megabytes / imported:.1f} |")
    print(f"| ratio import/raw (target >= 0.8) | {raw / imported:.2f} | |")
    print(f"\npeak RSS of popbox import pop3: {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
