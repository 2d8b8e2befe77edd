"""Retention in a running server (E0005): CAPA's EXPIRE and the background sweep."""

from __future__ import annotations

import asyncio
import poplib
import time
from typing import TYPE_CHECKING

import pytest

from mailserver import PASSWORD, MailServer, lmtp_transaction
from popbox.store import open_store
from popbox.store.message import prepare
from popbox_servers import ServeProcess

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.store.base import NewMessage
    from popbox_servers import TlsFiles


def capabilities(server: MailServer, *, login: bool) -> list[str]:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        if login:
            client.user("alice")
            client.pass_(PASSWORD)
        return [line.decode() for line in client._longcmd("CAPA")[1]]
    finally:
        client.quit()


@pytest.mark.parametrize(
    ("policy", "announced"),
    [({}, "EXPIRE NEVER"), ({"retrieved_days": 7, "unretrieved_days": 60}, "EXPIRE 7")],
)
def test_capa_expire_announces_the_retention_policy_rfc2449_s6_7(
    tmp_path: Path, policy: dict[str, int], announced: str
) -> None:
    """RFC 2449 s6.7: "If a site uses any automatic deletion policy, it SHOULD use the
    EXPIRE capability to announce this"; EXPIRE NEVER when it deletes nothing."""
    server = MailServer(tmp_path, retention=policy)
    try:
        server.add_user("alice")
        assert announced in capabilities(server, login=False)
        assert announced in capabilities(server, login=True)
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_background_sweep_removes_due_messages_while_serving_e0005(
    tmp_path: Path, workers: int, tls_files: TlsFiles
) -> None:
    """E0005: ``popbox serve`` deletes never-retrieved messages older than the policy
    allows by itself, every [retention] interval (with workers too); recent mail stays."""
    data_dir = tmp_path / "data"
    old = time.time() - 31 * 86400
    provision_messages(data_dir, [prepare(b"Subject: old\r\n\r\n", received_at=old)])
    config = tmp_path / "popbox.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n'
        '[pop3]\nlisten = ["127.0.0.1:0"]\ntls_listen = []\n'
        '[lmtp]\nlisten = ["127.0.0.1:0"]\n'
        f'[tls]\ncert_file = "{tls_files.cert_file}"\nkey_file = "{tls_files.key_file}"\n'
        f"[server]\nworkers = {workers}\n"
        "[retention]\nunretrieved_days = 30\ninterval = 0.05\n"
    )
    serve = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "serve.err"
    )
    try:
        serve.wait_for_listeners({"lmtp"})
        lmtp_transaction(("127.0.0.1", serve.port("lmtp")), ["alice"], b"Subject: new\r\n\r\n")
        deadline = time.monotonic() + 10
        while [b"Subject: old" in m for m in provision_messages(data_dir, [])] != [False]:
            assert time.monotonic() < deadline, "the sweep did not run"
            time.sleep(0.05)
    finally:
        assert serve.terminate() == 0
        serve.close()


def provision_messages(data_dir: Path, new: list[NewMessage]) -> list[bytes]:
    """Deliver ``new`` to alice (created if needed); return all of alice's messages."""

    async def run() -> list[bytes]:
        store = open_store("sqlite", data_dir=data_dir, dsn="")
        await store.open()
        try:
            if await store.get_user("alice") is None:
                await store.add_user("alice", {})
            for message in new:
                await store.deliver("alice", message)
            return [
                await store.fetch("alice", info.uid) or b""
                for info in await store.snapshot("alice")
            ]
        finally:
            await store.close()

    return asyncio.run(run())
