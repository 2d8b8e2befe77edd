"""A successful login upgrades a stored hash made with other parameters (issue 15 item 5).

Hashes imported from another server or made by an older popbox carry their own argon2id
parameters; until they are replaced, each check of them is padded to the configured cost
(test_bruteforce_server.py times it).  The right password is the one moment the
plaintext is at hand, so a login stores a hash at the configured cost then.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import argon2
import pytest

from popbox.auth.passwords import (
    ARGON2ID,
    SCRAM_SHA256,
    Argon2Params,
    PasswordVerifier,
    verifiers_for,
)
from popbox.auth.passwords import hash_password as make_hash
from popbox.config import ConfigError, from_mapping
from popbox.directory.base import LoginName, Status
from popbox.directory.internal import InternalDirectory
from popbox.node import app
from popbox.store.base import StoreTemporaryError
from popbox.store.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Mapping

PASSWORD = "alice secret"
# Cheaper than what the test servers and CONFIGURED use: what an import leaves behind.
IMPORTED = Argon2Params(time_cost=1, memory_cost_kib=1024)
CONFIGURED = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024)
OLD_SCRAM = "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "="


def user_pass(client, password: str) -> bytes:
    assert client.ask(b"USER alice\r\n").startswith(b"+OK")
    return client.ask(f"PASS {password}\r\n".encode())


def auth_plain(client, password: str) -> bytes:
    return client.ask(b"AUTH PLAIN " + base64.b64encode(f"\0alice\0{password}".encode()) + b"\r\n")


def stored_hash(server) -> str:
    record = server.call(server.store.get_user("alice"))
    assert record is not None
    return record.verifiers[ARGON2ID]


def cost_of(phc: str) -> tuple[int, int]:
    params = argon2.extract_parameters(phc)
    return params.memory_cost, params.time_cost


@pytest.mark.parametrize("login", [user_pass, auth_plain], ids=["USER/PASS", "PLAIN"])
def test_login_rehashes_an_imported_cheap_hash_at_the_configured_cost(auth_server, login):
    """After the right password, the stored argon2id hash has the server's parameters and
    still matches; the other verifiers are kept; a wrong password changes nothing."""
    server = auth_server(pop3={"max_auth_failures": 10})
    imported = make_hash(PASSWORD, IMPORTED)
    server.call(server.store.add_user("alice", {ARGON2ID: imported, SCRAM_SHA256: OLD_SCRAM}))
    client = server.connect(tls=True)
    assert login(client, "wrong").startswith(b"-ERR [AUTH]")
    assert stored_hash(server) == imported

    assert login(client, PASSWORD).startswith(b"+OK")

    upgraded = stored_hash(server)
    assert cost_of(upgraded) == (server.params.memory_cost_kib, server.params.time_cost)
    assert cost_of(upgraded) != cost_of(imported)
    assert server.call(PasswordVerifier(server.params).verify(upgraded, PASSWORD)) is True
    record = server.call(server.store.get_user("alice"))
    assert record is not None
    assert record.verifiers[SCRAM_SHA256] == OLD_SCRAM
    again = server.connect(tls=True)
    assert login(again, PASSWORD).startswith(b"+OK")
    assert stored_hash(server) == upgraded  # at the configured cost: left as it is


class _Store(MemoryStore):
    """A MemoryStore whose set_verifiers can be made to fail."""

    fail_writes = False

    async def set_verifiers(self, name: str, verifiers: Mapping[str, str]) -> None:
        if self.fail_writes:
            raise StoreTemporaryError("the mail database is unavailable")
        await super().set_verifiers(name, verifiers)


async def _login(store: MemoryStore, verifier: PasswordVerifier) -> Status:
    """alice's PASSWORD, checked by the internal directory as every password login is."""
    directory = InternalDirectory("internal", store, verifier, rehash_on_login=True)
    login = LoginName(raw="alice", user="alice", local="alice", domain="")
    return (await directory.authenticate(login, PASSWORD, "127.0.0.1")).status


async def test_upgrade_keeps_a_password_changed_while_hashing():
    """An administrator's new password, set while the login hashed, is not replaced by
    a hash of the old one."""
    store = _Store()
    await store.add_user("alice", {ARGON2ID: make_hash(PASSWORD, IMPORTED)})
    admins = {ARGON2ID: make_hash("new password", CONFIGURED)}

    class AdminMeanwhile(PasswordVerifier):
        async def rehash(self, password: str) -> str:
            await store.set_verifiers("alice", admins)
            return await super().rehash(password)

    assert await _login(store, AdminMeanwhile(CONFIGURED)) is Status.OK

    record = await store.get_user("alice")
    assert record is not None
    assert record.verifiers == admins


async def test_store_failure_while_upgrading_keeps_the_login():
    """The password was right: a store that cannot take the new hash does not undo that."""
    store = _Store()
    imported = make_hash(PASSWORD, IMPORTED)
    await store.add_user("alice", {ARGON2ID: imported})
    store.fail_writes = True

    assert await _login(store, PasswordVerifier(CONFIGURED)) is Status.OK

    record = await store.get_user("alice")
    assert record is not None
    assert record.verifiers[ARGON2ID] == imported


async def test_configured_argon2_settings_are_the_cost_of_checks_and_new_hashes(tmp_path):
    """``[auth] argon2_*``: the server's verifier and ``user add``'s hashes use them."""
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "pop3": {"listen": [], "tls_listen": []},
            "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 1024},
        }
    )
    context = await app.build_context(config, store=MemoryStore())

    assert context.passwords.params == IMPORTED
    assert cost_of(verifiers_for("pw", auth=config.auth)[ARGON2ID]) == (1024, 1)


def test_argon2_memory_below_the_rfc_9106_minimum_is_a_config_error(tmp_path):
    """RFC 9106 s3.1: memory is at least 8 KiB per lane; the error names the key."""
    with pytest.raises(ConfigError, match=r"auth\.argon2_memory_kib"):
        from_mapping({"data_dir": str(tmp_path), "auth": {"argon2_memory_kib": 4}})
