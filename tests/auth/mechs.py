"""Helpers for driving mechanism objects without a server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from popbox.auth.base import AuthContext
from popbox.auth.passwords import Argon2Params, verifiers_for
from popbox.config import AuthConfig
from popbox.store.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Coroutine

FAST = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def context_with(users: dict[str, str], auth: AuthConfig | None = None) -> AuthContext:
    store = MemoryStore()
    for name, password in users.items():
        run(store.add_user(name, verifiers_for(password, FAST, auth=auth or AuthConfig())))
    return AuthContext(store=store, peer="127.0.0.1:4000", tls_active=True)


class ScramClient:
    """RFC 5802 client side, for tests: enough to log in and to tamper."""

    def __init__(self, user: str, password: str, nonce: str = "fyko+d2lbbFgONRv9qkxdawL") -> None:
        self.user, self.password, self.nonce = user, password, nonce
        self.bare = f"n={user},r={nonce}"
        self.server_signature = b""

    def first(self, gs2: str = "n,,") -> bytes:
        self.gs2 = gs2
        return (gs2 + self.bare).encode()

    def final(self, server_first: bytes, *, channel: str | None = None) -> bytes:
        fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        c = channel if channel is not None else base64.b64encode(self.gs2.encode()).decode()
        without_proof = f"c={c},r={fields['r']}"
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
