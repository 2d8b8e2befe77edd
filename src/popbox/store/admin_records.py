"""What the admin API keeps in the store besides mail and users: its API tokens.

Theory of operation: every backend offers these through its ``admin`` attribute, an
``AdminRecords`` object, so that the ``MailStore`` contract the POP3 and delivery paths
use does not grow.  This module imports nothing of the store, so ``store/base.py`` can
name it.  A token row holds the SHA-256 of the token's secret, never the
secret (``admin/tokens.py`` makes and checks tokens).  Disabled accounts are the users
table's (``MailStore.set_disabled``), shared with ``popbox user disable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["AdminRecords", "Scope", "TokenRecord"]

Scope = Literal["read", "admin"]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One API token as stored: its public id, the digest of its secret, its rights."""

    id: str
    digest: str  # hex SHA-256 of the secret
    scope: Scope
    created_at: float  # POSIX seconds
    expires_at: float | None = None  # None: never
    note: str = ""


class AdminRecords(Protocol):
    """The admin API's rows in a store.  Every method may raise ``StoreError``."""

    async def add_token(self, token: TokenRecord) -> None:
        """Store a new token (its id and digest are new)."""

    async def tokens(self) -> Sequence[TokenRecord]:
        """Every token, oldest first."""

    async def token_by_digest(self, digest: str) -> TokenRecord | None:
        """The token whose secret has this digest, or None."""

    async def revoke_token(self, token_id: str) -> bool:
        """Remove a token; False when there was none with that id."""
