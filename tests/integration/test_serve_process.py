"""The real ``popbox serve``, ``popbox demo`` and ``popbox deliver`` commands, as processes.

Few tests live here because each starts Python processes: the listening lines with
port 0, a graceful SIGTERM (DESIGN.md section 4), the demo's printed curl commands, and
the MDA delivering into a running server's store.
"""

from __future__ import annotations

import asyncio
import poplib
import shlex
import subprocess
import time

import pytest

from pop3_clients import MESSAGES, RawClient, message_text, require
from popbox.store import open_store
from popbox.store.message import normalise, stuff
from popbox_servers import USERS, ServeProcess, popbox_executable

ERR_SHUTDOWN = b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"


def _uids(data_dir, user: str) -> list[int]:
    async def read() -> list[int]:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            return [info.uid for info in await store.snapshot(user)]
        finally:
            await store.close()

    return asyncio.run(read())


def _logged_in(process: ServeProcess, tls_files) -> RawClient:
    host, port = process.addresses["pop3s"][0]
    raw = RawClient.connect(host, port, tls=tls_files.client_context())
    assert raw.line().startswith(b"+OK")
    raw.send(f"USER alice\r\nPASS {USERS['alice']}\r\n".encode())
    assert [line[:3] for line in raw.lines(2)] == [b"+OK", b"+OK"]
    return raw


def test_sigterm_drains_sessions_then_exits_zero_losing_nothing(start_popbox_serve, tls_files):
    """SIGTERM: stop accepting, let sessions finish for shutdown_grace, then -ERR and exit 0."""
    process, data_dir = start_popbox_serve({"alice": list(MESSAGES)}, {"shutdown_grace": 1.5})
    for kind in ("pop3", "pop3s"):
        [(host, port)] = process.addresses[kind]
        assert host == "127.0.0.1"
        assert port > 0  # port 0 in the configuration, the real one printed
    uids = _uids(data_dir, "alice")
    stuffed = stuff(normalise(MESSAGES[1]))
    with _logged_in(process, tls_files) as idle, _logged_in(process, tls_files) as finishing:
        idle.send(b"DELE 1\r\nRETR 2\r\n")
        assert idle.line().startswith(b"+OK")
        size = len(normalise(MESSAGES[1]))
        assert idle.multiline() == f"+OK {size} octets\r\n".encode() + stuffed + b".\r\n"
        process.send_sigterm()
        deadline = time.monotonic() + 10
        while "stopping" not in process.stderr():
            assert time.monotonic() < deadline, process.stderr()
            time.sleep(0.02)
        # A session that finishes within the grace period finishes normally.
        finishing.send(b"DELE 3\r\nQUIT\r\n")
        assert (
            finishing.read_to_eof()
            == b"+OK message 3 deleted\r\n+OK signing off, 1 message deleted\r\n"
        )
        # One still idle when it runs out is told why, then closed without UPDATE.
        assert idle.read_to_eof() == ERR_SHUTDOWN
    assert process.terminate() == 0
    assert _uids(data_dir, "alice") == [uid for uid in uids if uid != uids[2]]


@pytest.mark.clients
def test_demo_prints_curl_commands_that_work(tmp_path):
    """`popbox demo` in a fresh folder: a demo user with mail, and curl commands that work."""
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    # The demo keeps a configuration it finds; this one only swaps in ephemeral ports.
    (demo_dir / "popbox.toml").write_text(
        'data_dir = "."\n[pop3]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n'
        '[lmtp]\nlisten = ["127.0.0.1:0"]\n[admin]\nlisten = ["127.0.0.1:0"]\n',
        encoding="utf-8",
    )
    process = ServeProcess(
        ["demo", "--dir", str(demo_dir)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    try:
        for _ in range(50):
            line = process.next_line()
            if line is None or line.startswith("Press Ctrl-C"):
                break
        commands = [line.strip() for line in process.output if line.strip().startswith("curl ")]
        assert len(commands) == 2, (process.output, process.stderr())
        outputs = []
        for command in commands:
            argv = [require("curl"), *shlex.split(command)[1:], "--silent", "--max-time", "20"]
            result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
            assert result.returncode == 0, (command, result.stderr)
            outputs.append(result.stdout)
        listing, first = outputs
        assert [line.split()[0] for line in listing.splitlines()] == [b"1", b"2", b"3"]
        assert b"Subject: Welcome to popbox\r\n" in first
        assert first.endswith(b"This mailbox is served by popbox over POP3.\r\n")
        assert process.terminate() == 0
    finally:
        process.close()


def test_deliver_command_mail_is_retrievable_at_once(start_popbox_serve, tls_files):
    """`popbox deliver` (MDA): exit 0 only once stored; sysexits 67 and 65 for refusals."""
    process, data_dir = start_popbox_serve()
    deliver = [popbox_executable(), "deliver", "--config", str(data_dir / "popbox.toml")]
    raw = b"From: mta@example.org\nSubject: via the MDA\n\n.dot line\ncaf\xe9\n"

    def run(*names: str, message: bytes = raw) -> int:
        result = subprocess.run(
            [*deliver, *names], input=message, capture_output=True, timeout=30, check=False
        )
        return result.returncode

    assert run("alice", "bob") == 0
    assert run("nobody") == 67  # EX_NOUSER
    assert run("alice", message=b"Subject: x\n\nNUL \x00 here\n") == 65  # EX_DATAERR, C0011
    host, port = process.addresses["pop3s"][0]
    for user in ("alice", "bob"):
        client = poplib.POP3_SSL(host, port, context=tls_files.client_context(), timeout=10)
        try:
            client.user(user)
            client.pass_(USERS[user])
            assert client.stat()[0] == 1
            _, lines, _ = client.retr(1)
        finally:
            client.quit()
        assert message_text(lines) == normalise(raw)
    assert process.terminate() == 0
