"""A full disk and a read-only filesystem under ``popbox serve`` (issue 15 item 1).

A full disk is a passing condition: POP3 reads keep working, a write that needs space
answers ``-ERR [SYS/TEMP]`` (RFC 3206 s4) and changes nothing, LMTP answers 4xx
(RFC 2033 s4.2, so the MTA keeps the message queued), ``popbox deliver`` exits 75
(EX_TEMPFAIL), no worker dies, and everything works again once space returns.  A
read-only filesystem still serves the mail it holds.  The data directory is a small
tmpfs the test mounts (``tests/tmpfs.py``); on tmpfs even reading a page of a sparse
shared map needs a block, the harshest case.
"""

from __future__ import annotations

import os
import poplib
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

import tmpfs
from mailserver import lmtp_transaction
from ops_helpers import Node, login, wait_gone
from popbox_servers import (
    USERS,
    ServeProcess,
    config_mapping,
    popbox_executable,
    provision,
    toml_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from popbox_servers import TlsFiles

# Small enough for read-ahead (several per RETR run), with a line worth recognising.
MESSAGES = [b"Subject: kept %d\r\n\r\n" % n + b"line of message %d\r\n" % n * 40 for n in range(6)]
BIG = b"Subject: big\r\n\r\n" + b"a line that needs space on the disk\r\n" * 60_000  # 2.2 MB
SMALL = b"Subject: after\r\n\r\nspace returned\r\n"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tmpfs.Tmpfs]:
    with tmpfs.mounted(tmp_path / "disk", "8m") as mounted:
        yield mounted


def serve(tmp_path: Path, data_dir: Path, tls: TlsFiles, name: str = "serve") -> Node:
    """``popbox serve`` with two workers on ``data_dir``; its config and log elsewhere."""
    mapping = config_mapping(
        data_dir,
        tls,
        {"login_type": "plaintext_login"},
        {"server": {"workers": 2, "json_logs": True}, "lmtp": {"hostname": "mx.test"}},
    )
    config = tmp_path / f"{name}.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / f"{name}.err"
    )
    try:
        process.wait_for_listeners({"pop3", "lmtp"}, timeout=60)
    except BaseException:
        process.close()
        raise
    return Node(process, data_dir, config, mapping)


@pytest.fixture
def node(tmp_path: Path, disk: tmpfs.Tmpfs, tls_files: TlsFiles) -> Iterator[Node]:
    provision(disk.path / "data", USERS, {"alice": MESSAGES})
    started = serve(tmp_path, disk.path / "data", tls_files)
    yield started
    started.process.close()


def no_worker_died(node: Node) -> None:
    exited = [e for e in node.events() if e.get("event") == "worker_exited"]
    assert not exited, f"a worker died: {exited}"


def retrieve_all(port: int) -> list[bytes]:
    """Every message, RETR 1, 2, ... (the read-ahead path), then QUIT.

    QUIT records the retrievals (for retention, E0005), a write: on a full disk it may
    answer -ERR [SYS/TEMP] instead of +OK (RFC 3206 s4), but it must answer.
    """
    client = login(port)
    count, _ = client.stat()
    bodies = [b"\r\n".join(client.retr(n)[1]) for n in range(1, count + 1)]
    assert quit_reply(client).startswith((b"+OK", b"-ERR [SYS/TEMP] "))
    return bodies


def dele_quit(port: int, msg: int) -> bytes:
    """DELE ``msg`` and QUIT: the QUIT reply (UPDATE's outcome)."""
    client = login(port)
    assert client.dele(msg).startswith(b"+OK")
    return quit_reply(client)


def quit_reply(client: poplib.POP3) -> bytes:
    try:
        return client.quit()
    except poplib.error_proto as exc:
        client.close()  # poplib closes only after a +OK
        return exc.args[0]


def lmtp(node: Node, message: bytes, recipient: str = "alice") -> str:
    rcpt, data = lmtp_transaction(("127.0.0.1", node.port("lmtp")), [recipient], message)
    assert rcpt == ["250 2.1.5 recipient OK"]
    [reply] = data
    return reply


def popbox_deliver(node: Node, message: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [popbox_executable(), "deliver", "--config", str(node.config_path), "alice"],
        input=message,
        capture_output=True,
        timeout=60,
        check=False,
    )


def stored_subjects(node: Node) -> list[bytes]:
    """The Subject line of every message (delivered ones start with trace lines)."""
    return [
        next(line for line in body.split(b"\r\n") if line.startswith(b"Subject: "))
        for body in retrieve_all(node.port())
    ]


def test_full_disk_keeps_pop3_reads_and_answers_writes_with_sys_temp(
    node: Node, disk: tmpfs.Tmpfs
) -> None:
    """RFC 3206 s4: [SYS/TEMP] "the problem is temporary"; V0006: UPDATE all or none.

    On a full disk RETR keeps working (also RETR 1, 2, ... read ahead), DELE+QUIT
    answers -ERR [SYS/TEMP] and removes nothing, and after space returns it removes.
    """
    disk.fill()
    for _ in range(3):  # more than one session, so both workers are likely to serve
        assert retrieve_all(node.port()) == [m.rstrip(b"\r\n") for m in MESSAGES]
    reply = dele_quit(node.port(), 1)
    assert reply.startswith(b"-ERR [SYS/TEMP] "), reply
    assert len(stored_subjects(node)) == len(MESSAGES)  # nothing was removed
    no_worker_died(node)

    disk.free()
    assert dele_quit(node.port(), 1).startswith(b"+OK")
    assert stored_subjects(node) == [b"Subject: kept %d" % n for n in range(1, 6)]
    no_worker_died(node)


def test_full_disk_defers_lmtp_and_popbox_deliver_until_space_returns(
    node: Node, disk: tmpfs.Tmpfs
) -> None:
    """RFC 2033 s4.2: a per-recipient 4xx after DATA; sysexits EX_TEMPFAIL (75) for the
    MDA: the MTA keeps the message and retries, nothing is stored half-way."""
    disk.fill()
    reply = lmtp(node, BIG)
    assert reply.startswith(("451 ", "452 ")), reply
    done = popbox_deliver(node, BIG)
    assert done.returncode == 75, done
    assert len(done.stderr.decode().splitlines()) == 1, done.stderr  # one line, no traceback
    assert len(stored_subjects(node)) == len(MESSAGES)
    no_worker_died(node)

    disk.free()
    assert lmtp(node, BIG).startswith("250 ")
    done = popbox_deliver(node, SMALL)
    assert done.returncode == 0, done
    subjects = stored_subjects(node)
    assert subjects[-2:] == [b"Subject: big", b"Subject: after"]
    no_worker_died(node)


def test_restart_on_a_full_disk_serves_without_read_ahead_then_resumes(
    tmp_path: Path, node: Node, disk: tmpfs.Tmpfs, tls_files: TlsFiles
) -> None:
    """A crash, then a start on a full disk, with a counters file that has no blocks
    (sparse, as older versions made it): the server starts and serves every RETR, and
    takes the blocks once space returns (read-ahead resumes)."""
    assert retrieve_all(node.port())
    workers = list(node.worker_pids().values())
    for pid in [node.pid, *workers]:  # a crash: -wal and -shm stay behind
        os.kill(pid, signal.SIGKILL)
    node.process.close()
    for pid in workers:
        wait_gone(pid)
    changes = disk.path / "data" / "popbox.sqlite3-changes"
    changes.unlink()
    changes.write_bytes(b"")
    os.truncate(changes, 32 * 1024)
    disk.fill()

    restarted = serve(tmp_path, disk.path / "data", tls_files, name="restarted")
    try:
        for _ in range(3):
            assert retrieve_all(restarted.port()) == [m.rstrip(b"\r\n") for m in MESSAGES]
        assert changes.stat().st_blocks == 0
        disk.free()
        assert retrieve_all(restarted.port())
        assert changes.stat().st_blocks * 512 >= 32 * 1024  # allocated, mapped again
        assert dele_quit(restarted.port(), 1).startswith(b"+OK")
        no_worker_died(restarted)
    finally:
        restarted.process.close()


def test_read_only_filesystem_serves_existing_mail(
    tmp_path: Path, disk: tmpfs.Tmpfs, tls_files: TlsFiles
) -> None:
    """A store on a filesystem remounted read-only: RETR works, DELE+QUIT answers
    -ERR [SYS/TEMP] (RFC 3206 s4), LMTP 4xx and deliver 75: no mail is refused for good."""
    provision(disk.path / "data", USERS, {"alice": MESSAGES})
    # A server ran on it before (it made its auth secret), and was stopped cleanly.
    first = serve(tmp_path, disk.path / "data", tls_files, name="before")
    assert first.process.terminate() == 0
    first.process.close()
    disk.remount("ro")
    try:
        node = serve(tmp_path, disk.path / "data", tls_files)
        try:
            assert retrieve_all(node.port()) == [m.rstrip(b"\r\n") for m in MESSAGES]
            assert dele_quit(node.port(), 1).startswith(b"-ERR [SYS/TEMP] ")
            assert lmtp(node, SMALL).startswith("451 ")
            done = popbox_deliver(node, SMALL)
            assert done.returncode == 75, done
            assert len(stored_subjects(node)) == len(MESSAGES)
            no_worker_died(node)
        finally:
            node.process.close()
    finally:
        disk.remount("rw")


def test_login_during_full_disk_is_answered(node: Node, disk: tmpfs.Tmpfs) -> None:
    """Every command gets a reply on a full disk: the session is never dropped."""
    disk.fill()
    client = login(node.port())
    assert client.noop().startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES)
    assert client.top(2, 0)[0].startswith(b"+OK")
    assert client.rset().startswith(b"+OK")
    assert client.quit().startswith(b"+OK")  # nothing retrieved, nothing to write
    assert node.process.process.poll() is None
    no_worker_died(node)
