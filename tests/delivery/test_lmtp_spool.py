"""LMTP DATA beyond ``[lmtp] spool_threshold`` goes to a file, not to memory (issue 15 item 7).

The big test runs ``popbox serve`` as its own process and sends it several 40 MiB
messages at once over LMTP: the server's peak resident memory (VmHWM, read from /proc)
grows by about one message's copies, not by one per transaction, and every message
arrives byte for byte.  The others use the in-process server: what an aborted DATA or a
failed spool write leaves behind (nothing), and the spooled path's replies.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailserver import LmtpClient, MailServer, lmtp_transaction, split_trace, stuff, verifiers
from popbox.delivery.spool import SPOOL_DIR
from popbox.store.message import unstuff
from popbox_cli import in_store, popbox_command

if TYPE_CHECKING:
    from collections.abc import Iterator

    from popbox.store.base import MailStore

MIB = 1024 * 1024
TIMEOUT = 600
CONCURRENT = 4


def big_message(seed: int, size: int = 40 * MIB) -> bytes:
    """``size`` octets of distinct CRLF text per ``seed``, with lines that begin with "."
    (dot-transparency, RFC 5321 s4.5.2) and 8-bit octets."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    head = f"Subject: big {seed}\r\nMessage-ID: <{seed}@example.org>\r\n\r\n".encode()
    lines = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    body = lines[: size - len(head) - 20].replace(b"\r\nA", b"\r\n.")  # some dot lines
    return head + body + b"\r\n\xe9t\xe9 \xff end.\r\n"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def spool_fds(pid: int, spool: Path) -> list[str]:
    """The open files of ``pid`` in the spool directory (unnamed ones show as deleted)."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(str(fd.readlink()))
        except FileNotFoundError:
            continue
    return [link for link in links if link.startswith(str(spool))]


class ServeProcess:
    """``popbox serve`` with one worker: the process whose memory is measured."""

    def __init__(self, tmp_path: Path, **lmtp: object) -> None:
        self.data_dir = tmp_path / "data"
        settings = "".join(f"{key} = {value}\n" for key, value in lmtp.items())
        config = tmp_path / "popbox.toml"
        config.write_text(
            f'data_dir = "{self.data_dir}"\n[server]\nworkers = 1\n'
            '[pop3]\nlisten = ["127.0.0.1:0"]\ntls_listen = []\n'
            f'[lmtp]\nlisten = ["127.0.0.1:0"]\n{settings}'
        )

        async def add_alice(store: MailStore) -> None:
            await store.add_user("alice", verifiers())

        in_store(self.data_dir, add_alice)
        self.process = subprocess.Popen(
            [popbox_command(), "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its log; a pipe nobody reads could fill and block it
        )
        self.lmtp = ("127.0.0.1", self._port("lmtp"))

    def _port(self, kind: str) -> int:
        # Blocking reads: the test's timeout bounds them, and a process that ends
        # gives an empty line.
        assert self.process.stdout is not None
        for _ in range(20):
            line = self.process.stdout.readline().decode()
            assert line, "popbox serve ended before listening"
            if line.startswith(f"listening {kind} "):
                return int(line.rsplit(":", 1)[1])
        raise AssertionError(f"popbox serve never printed 'listening {kind}'")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        finally:
            assert self.process.stdout is not None
            self.process.stdout.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path)
    yield server
    server.stop()


@pytest.mark.timeout(900)  # 160 MiB through LMTP and SQLite on a shared two-core machine
def test_concurrent_40_mib_messages_cost_one_message_of_memory_and_arrive_exact(
    serve: ServeProcess,
) -> None:
    """RFC 2033 s4.2 (one reply per recipient after the data) for four concurrent 40 MiB
    transactions: each gets 250, each stored message is the sent one octet for octet
    (C0011: it was CRLF already), and the server's peak memory grows by less than four
    copies of one message (before spooling: about 3.5 copies per transaction, 560 MiB
    for these four).  No spool file stays open or on disk."""
    pid = serve.process.pid
    lmtp_transaction(serve.lmtp, ["alice"], b"Subject: warm-up\r\n\r\nsmall\r\n")
    messages = [big_message(seed) for seed in range(CONCURRENT)]
    payloads = [stuff(message) + b".\r\n" for message in messages]
    baseline = status_kib(pid, "VmRSS")
    replies: list[list[str]] = [[] for _ in messages]

    def send(index: int) -> None:
        client = LmtpClient(serve.lmtp)
        client.sock.settimeout(TIMEOUT)
        try:
            assert client.command("LHLO client.test").startswith("250")
            assert client.command("MAIL FROM:<sender@example.org>").startswith("250")
            assert client.command("RCPT TO:<alice>").startswith("250")
            assert client.command("DATA").startswith("354")
            client.send(payloads[index])
            replies[index].append(client.reply())
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert all(reply[0].startswith("250 2.1.5 <alice> delivered") for reply in replies), replies

    growth_mib = (status_kib(pid, "VmHWM") - baseline) / 1024
    assert growth_mib < 4 * 40, f"peak memory grew by {growth_mib:.0f} MiB"
    spool = serve.data_dir / SPOOL_DIR
    assert spool_fds(pid, spool) == []
    assert list(spool.iterdir()) == []

    async def read_back(store: MailStore) -> list[bytes]:
        infos = (await store.snapshot("alice"))[1:]
        return [unstuff(await store.fetch("alice", info.uid) or b"") for info in infos]

    stored = in_store(serve.data_dir, read_back)
    assert isinstance(stored, list)
    bodies = sorted(split_trace(wire)[1] for wire in stored)
    assert bodies == sorted(messages)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    running = MailServer(tmp_path / "data", lmtp={"spool_threshold": 1000})
    running.add_user("alice")
    running.add_user("bob")
    yield running
    running.stop()


def test_spooled_message_gets_a_reply_per_recipient_rfc2033_s4_2(server: MailServer) -> None:
    """RFC 2033 s4.2: one reply per accepted RCPT after the data, spooled or not."""
    message = big_message(7, size=50_000)
    _, data = lmtp_transaction(("127.0.0.1", server.port("lmtp")), ["alice", "bob"], message)
    assert [reply.split(" ", 3)[:3] for reply in data] == [
        ["250", "2.1.5", "<alice>"],
        ["250", "2.1.5", "<bob>"],
    ]
    for name in ("alice", "bob"):
        [info] = server.call(server.store.snapshot(name))
        wire = server.call(server.store.fetch(name, info.uid))
        assert split_trace(unstuff(wire or b""))[1] == message


def test_aborted_data_leaves_no_spool_file(server: MailServer) -> None:
    """A client that goes away in the middle of a spooled DATA leaves no file, open or
    on disk, and nothing stored."""
    spool = server.config.data_dir / SPOOL_DIR
    client = LmtpClient(("127.0.0.1", server.port("lmtp")))
    assert client.command("LHLO client.test").startswith("250")
    assert client.command("MAIL FROM:<s@example.org>").startswith("250")
    assert client.command("RCPT TO:<alice>").startswith("250")
    assert client.command("DATA").startswith("354")
    client.send(stuff(big_message(3, size=200_000))[:150_000])
    deadline = time.monotonic() + 10
    while not spool_fds(os.getpid(), spool) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spool_fds(os.getpid(), spool), "the data never reached a spool file"
    client.close()
    while spool_fds(os.getpid(), spool) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spool_fds(os.getpid(), spool) == []
    assert list(spool.iterdir()) == []
    assert server.call(server.store.snapshot("alice")) == []


def test_failed_spool_write_is_a_temporary_failure_for_every_recipient(
    server: MailServer,
) -> None:
    """A spool that cannot be written (here: its directory is gone; a full disk alike)
    gets 451 4.3.0 per recipient after the data, so the MTA keeps the message; nothing
    is stored and the next transaction works again."""
    spool = server.config.data_dir / SPOOL_DIR
    spool.rmdir()
    address = ("127.0.0.1", server.port("lmtp"))
    _, data = lmtp_transaction(address, ["alice", "bob"], big_message(5, size=20_000))
    assert [reply[:9] for reply in data] == ["451 4.3.0", "451 4.3.0"]
    assert server.call(server.store.snapshot("alice")) == []
    spool.mkdir()
    _, data = lmtp_transaction(address, ["alice"], big_message(5, size=20_000))
    assert data[0].startswith("250 2.1.5")


def test_leftover_in_the_spool_directory_is_removed_at_start(tmp_path: Path) -> None:
    """A spool file a dead process left behind (where files cannot be unnamed) goes at
    the next start."""
    spool = tmp_path / "data" / SPOOL_DIR
    spool.mkdir(parents=True)
    (spool / "data-left-by-a-crash").write_bytes(b"x" * 1000)
    running = MailServer(tmp_path / "data")
    try:
        assert list(spool.iterdir()) == []
    finally:
        running.stop()
