"""popbox behind PgBouncer in transaction mode (``[storage] transaction_pooler = true``).

A transaction pooler gives each transaction to whichever server connection is free, so
nothing may outlive a transaction on a server connection: no cached prepared
statements, no session settings, no session advisory locks, no LISTEN.  PgBouncer
(Debian's ``pgbouncer``) runs on an ephemeral port from a temporary configuration, in
front of the machine's PostgreSQL, with a server pool smaller than the number of
clients so that transactions really do move between server connections.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailserver import LmtpClient, stuff
from ops_helpers import TIMEOUT, login, start_node
from pg_helpers import ThrowawayDatabase, _free_port, shared_server_dsn
from popbox.store.message import prepare
from popbox.store.postgres import PostgresStore
from popbox.store.postgres_options import PostgresOptions
from popbox_servers import USERS, provision_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from popbox_servers import TlsFiles

PGBOUNCER = "/usr/sbin/pgbouncer"


class Bouncer:
    """``pgbouncer`` in transaction mode in front of one database, on its own port."""

    def __init__(self, database: ThrowawayDatabase) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="popbox-pgbouncer-"))
        self.port = _free_port()
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"popbox = host=127.0.0.1 port=5432 dbname={database.name} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        owner: list[str] = []
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.directory, "postgres", "postgres")
            for name in ("users.txt", "pgbouncer.ini"):
                shutil.chown(self.directory / name, "postgres", "postgres")
            owner = ["runuser", "-u", "postgres", "--"]
        self.process = subprocess.Popen(
            [*owner, PGBOUNCER, str(self.directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, f"pgbouncer did not listen: {self.log()}"
                time.sleep(0.05)
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/popbox"

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed: scripts/setup installs the Debian package")
    database = ThrowawayDatabase(shared_server_dsn())
    started = Bouncer(database)
    try:
        yield started
    finally:
        started.close()
        database.drop()


async def test_store_through_a_transaction_pooler_delivers_reads_and_updates(
    bouncer: Bouncer,
) -> None:
    """Concurrent deliveries, snapshots, fetches and an UPDATE, over two server connections."""
    store = PostgresStore(bouncer.dsn, options=PostgresOptions(transaction_pooler=True))
    await store.open()  # the migrations, advisory lock included, run through it too
    try:
        await provision_store(store, USERS, {})
        texts = [b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(40)]
        delivered = await asyncio.gather(*(store.deliver("alice", prepare(text)) for text in texts))
        assert sorted(i.uid for i in delivered) == list(range(1, 41))  # C0007: no gaps, no twins
        snapshot = await store.snapshot("alice")
        bodies = await asyncio.gather(*(store.fetch("alice", info.uid) for info in snapshot))
        assert sorted(bodies) == sorted(prepare(text).wire for text in texts)
        handle = await store.open_maildrop("alice")
        assert await handle.commit([info.uid for info in snapshot[:10]], [], 1.0) == 10
        assert len(await store.snapshot("alice")) == 30
    finally:
        await store.close()


def test_serve_deliver_retrieve_through_pgbouncer(
    tmp_path: Path, tls_files: TlsFiles, bouncer: Bouncer
) -> None:
    """End to end (RFC 2033 s4.2, RFC 1939 s7): LMTP 250, then RETR, DELE and QUIT."""
    node = start_node(
        tmp_path,
        tls_files,
        sections={
            "server": {"workers": 2},
            "storage": {"backend": "postgresql", "dsn": bouncer.dsn, "transaction_pooler": True},
            "lmtp": {"listen": ["127.0.0.1:0"]},
        },
        pop3={"login_type": "plaintext_login", "tls_listen": []},
        kinds=frozenset({"pop3", "lmtp"}),
    )
    try:
        message = b"Subject: through the pooler\r\n\r\nhello\r\n"
        client = LmtpClient(("127.0.0.1", node.port("lmtp")))
        try:
            client.command("LHLO test")
            client.command("MAIL FROM:<a@example.org>")
            assert client.command("RCPT TO:<alice>").startswith("250")
            assert client.command("DATA").startswith("354")
            client.send(stuff(message) + b".\r\n")
            assert client.reply().startswith("250")
        finally:
            client.close()
        pop = login(node.port())
        assert pop.stat()[0] == 1
        # Return-Path and Received come first (RFC 5321 s4.4), then the message as sent.
        assert (b"\r\n".join(pop.retr(1)[1]) + b"\r\n").endswith(message)
        pop.dele(1)
        assert pop.quit().startswith(b"+OK")
        pop = login(node.port())
        assert pop.stat()[0] == 0
        pop.quit()
    finally:
        node.process.close()
    errors = [e for e in node.events() if e.get("level") in {"error", "critical"}]
    assert not errors, errors[:3]
