"""How popbox talks to PostgreSQL beyond the address: acknowledgement strength, poolers.

Kept apart from ``postgres.py`` so that the store factory and the command-line tools can
name these options without loading asyncpg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popbox.config import StorageConfig

__all__ = ["STANDBY_LEVELS", "PostgresOptions"]

# synchronous_commit levels at which a commit waits for a synchronous standby (when the
# primary's synchronous_standby_names names one): PostgreSQL's "on", "remote_write" and
# "remote_apply"; "local" (and "off", which popbox never asks for) do not wait.
STANDBY_LEVELS = frozenset({"on", "remote_write", "remote_apply"})


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """``[storage]``'s PostgreSQL settings besides the DSN."""

    # "" leaves PostgreSQL's synchronous_commit as the database or role sets it.
    synchronous_commit: str = ""
    # PgBouncer in transaction mode (or a pooler like it) in front of the server.
    transaction_pooler: bool = False

    @classmethod
    def from_config(cls, storage: StorageConfig) -> PostgresOptions:
        return cls(storage.synchronous_commit, storage.transaction_pooler)

    @property
    def waits_for_standby(self) -> bool:
        """Whether popbox asks for a standby's confirmation before a commit counts."""
        return self.synchronous_commit in STANDBY_LEVELS
