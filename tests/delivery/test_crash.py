"""kill -9 of ``popbox serve`` in the middle of LMTP: no acknowledged message is lost, and
no partial message is ever visible (DESIGN section 3: durable before acknowledged).

The server runs as a real process (one worker, so SIGKILL stops everything that holds
the database) and is killed without warning; a new one is started on the same data and
the store is read directly.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import TYPE_CHECKING

from mailserver import LmtpClient, stuff
from popbox.store import open_store
from popbox.store.message import unstuff
from popbox_servers import ServeProcess

if TYPE_CHECKING:
    from pathlib import Path

BODY = b"line of a message that must arrive whole or not at all\r\n" * 400


def message(n: int) -> bytes:
    return b"Subject: crash test %d\r\nMessage-ID: <%d@crash.test>\r\n\r\n" % (n, n) + BODY


def start_serve(tmp_path: Path) -> ServeProcess:
    config = tmp_path / "popbox.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        '[pop3]\nlisten = ["127.0.0.1:0"]\ntls_listen = []\n'
        '[lmtp]\nlisten = ["127.0.0.1:0"]\n'
        "[server]\nworkers = 1\n"
    )
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "serve.err"
    )
    process.wait_for_listeners({"lmtp"})
    return process


def stored_bodies(tmp_path: Path) -> list[bytes]:
    """Every message of alice as it would be retrieved, trace lines removed."""

    async def read() -> list[bytes]:
        store = open_store("sqlite", data_dir=tmp_path / "data", dsn="")
        await store.open()
        try:
            if await store.get_user("alice") is None:
                await store.add_user("alice", {})
            found = []
            for info in await store.snapshot("alice"):
                text = unstuff(await store.fetch("alice", info.uid) or b"")
                found.append(text[text.index(b"Subject: ") :])
            return found
        finally:
            await store.close()

    return asyncio.run(read())


def kill(process: ServeProcess) -> None:
    process.process.send_signal(signal.SIGKILL)
    process.close()


def test_kill_during_data_leaves_no_partial_message(tmp_path: Path) -> None:
    stored_bodies(tmp_path)  # creates the database and alice
    serve = start_serve(tmp_path)
    client = LmtpClient(("127.0.0.1", serve.port("lmtp")))
    try:
        client.command("LHLO crash.test")
        client.command("MAIL FROM:<a@crash.test>")
        client.command("RCPT TO:<alice>")
        assert client.command("DATA").startswith("354")
        data = stuff(message(1))
        client.send(data[: len(data) // 2])  # half a message, then the server dies
        time.sleep(0.2)
        kill(serve)
    finally:
        client.close()
    assert stored_bodies(tmp_path) == []
    restarted = start_serve(tmp_path)
    kill(restarted)
    assert stored_bodies(tmp_path) == []


def test_kill_after_rcpt_and_between_deliveries_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """Transactions run back to back until the server is killed: every message that got
    its 250 is there after a restart, and every message there is whole."""
    stored_bodies(tmp_path)
    serve = start_serve(tmp_path)
    acknowledged: list[int] = []
    stop = threading.Event()

    def deliver_until_killed() -> None:
        address = ("127.0.0.1", serve.port("lmtp"))
        client = LmtpClient(address)
        try:
            client.command("LHLO crash.test")
            for n in range(10_000):
                if stop.is_set():
                    break
                client.command("MAIL FROM:<a@crash.test>")
                client.command("RCPT TO:<alice>")
                client.command("DATA")
                client.send(stuff(message(n)) + b".\r\n")
                if client.reply().startswith("250 "):
                    acknowledged.append(n)
        except (OSError, AssertionError):
            pass  # the server was killed mid-transaction: the point of the test
        finally:
            client.close()

    sender = threading.Thread(target=deliver_until_killed)
    sender.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    kill(serve)
    stop.set()
    sender.join(30)
    assert len(acknowledged) >= 20

    stored = stored_bodies(tmp_path)
    whole = {message(n): n for n in range(len(acknowledged) + 5)}
    assert all(body in whole for body in stored), "a partial or altered message is visible"
    numbers = [whole[body] for body in stored]
    assert set(acknowledged) <= set(numbers)
    # At most the one transaction in flight may be there without its 250 (the MTA would
    # send it again: at-least-once), and nothing is stored twice.
    assert len(numbers) == len(set(numbers)) <= len(acknowledged) + 1

    restarted = start_serve(tmp_path)
    kill(restarted)
    assert stored_bodies(tmp_path) == stored
