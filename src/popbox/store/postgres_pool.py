"""The connection pool under ``PostgresStore``, and what a driver failure means to popbox.

Theory of operation: every call of the store borrows a connection from one asyncpg pool,
and this is the one place where driver and network failures are seen, so it is kept
apart from the store class, which reads as the contract it implements:

* The pool hands a connection on without asyncpg's reset query (one more round trip
  per checkout): popbox leaves no session state behind (no SET, LISTEN, cursors or
  session advisory locks), and an open transaction is still rolled back.  The one
  connection that does LISTEN (``postgres_scores_copy``) is made outside the pool
  (``connect_alone``).
* Driver failures become ``StoreTemporaryError`` or ``StorePermanentError`` in one
  place, ``connection()``, using ``translate``; a failure that says the server is gone
  or no longer the primary also expires the pool's connections, so that each is made
  again through ``dsn``'s host list (failover: ``postgres_failover``).
* Every network wait is bounded: connecting and waiting for a pooled connection by
  ``connect_timeout``, each statement by ``command_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import asyncpg

from popbox.store import postgres_failover as failover
from popbox.store.base import StoreError, StorePermanentError, StoreTemporaryError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from asyncpg.pool import PoolConnectionProxy

    from popbox.store.postgres_options import PostgresOptions

__all__ = ["PostgresPool", "translate"]

# SQLSTATE classes and codes that describe a passing condition, so the client hears
# [SYS/TEMP] and an MTA keeps the message queued: 08 connection exception, 40
# transaction rollback (serialization failure, deadlock), 53 insufficient resources
# (disk full, too many connections), 57 operator intervention (shutdown, cancel,
# "cannot connect now"), 58 system error (I/O), 55P03 lock_not_available, and 25006
# read_only_sql_transaction: a server that was the primary and is now a standby (a
# switchover); the store then reconnects, through the host list, to the new primary.
_TEMPORARY_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TEMPORARY_CODES = frozenset({"55P03", failover.READ_ONLY_SQLSTATE})


class PostgresPool:
    """The pool of connections to ``dsn``, lent out with their failures translated.

    The parameters are ``PostgresStore``'s, which describes them; nothing connects
    before ``open``.
    """

    def __init__(  # noqa: PLR0913 -- the store's connection settings
        self,
        dsn: str,
        options: PostgresOptions,
        *,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        self._dsn = dsn
        self._options = options
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def open(self) -> None:
        """Make the pool and its first ``min_size`` connections."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                connect=failover.ConnectBackoff().connect,
                init=failover.learn_server,
                reset=_keep_session,
                connection_class=failover.ServerConnection,
                **failover.driver_options(self._options),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            mapped = translate(exc, connection_gone=False)
            if mapped is None:
                raise
            raise mapped from exc

    async def close(self) -> None:
        """Wait up to ``command_timeout`` for running calls, then close every connection."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self._command_timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # Closing is best effort: a dead server or a stuck call must not keep the
            # process from shutting down.  terminate() closes the sockets at once.
            pool.terminate()

    async def connect_alone(self) -> asyncpg.Connection[asyncpg.Record]:
        """A connection of its own, outside the pool, for a session that keeps state."""
        return await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            **failover.driver_options(self._options),
        )

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection; driver failures inside the block become ``StoreError``s."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the store is not open")
        lost = False
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                try:
                    yield conn
                except asyncpg.InternalClientError:
                    # asyncpg can leave a connection whose session the server ended in
                    # the middle of an operation in a confused protocol state ("cannot
                    # switch to state 12"): it must not go back to the pool.
                    conn.terminate()
                    raise
                finally:
                    # After a dropped connection, leaving a transaction block raises a
                    # plain InterfaceError ("connection is closed") that hides the cause.
                    lost = _is_lost(conn)
        except StoreError:
            raise
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as exc:
            mapped = translate(exc, connection_gone=lost or pool.is_closing())
            if mapped is None:
                raise
            if lost or failover.server_changed(exc):
                # Every pooled connection is on the same server: replace them all
                # through the host list rather than fail once on each.
                await pool.expire_connections()
            raise mapped from exc


def translate(  # noqa: PLR0911 - one return per kind of failure
    exc: BaseException, *, connection_gone: bool
) -> StoreError | None:
    """The ``StoreError`` a driver or network failure stands for, or None for a bug.

    ``connection_gone`` says whether the connection was found closed or the pool is
    closing: asyncpg then answers with a plain ``InterfaceError``, which otherwise means
    the API was misused.
    """
    if isinstance(exc, OSError):  # refused, reset, unreachable, and TimeoutError
        return StoreTemporaryError("the mail database is unreachable")
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if (
            isinstance(exc, asyncpg.PostgresConnectionError)
            or state[:2] in _TEMPORARY_CLASSES
            or state in _TEMPORARY_CODES
        ):
            return StoreTemporaryError(f"the mail database is unavailable ({state})")
        # Undefined table or column, a violated constraint, permission denied: the
        # schema or the data is not what this code expects.  Retrying will not help.
        return StorePermanentError(f"the mail database needs an administrator ({state})")
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        # Every host answered, none as the primary: a failover is under way.
        return StoreTemporaryError("no host of [storage] dsn is a primary at the moment")
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return StorePermanentError("the mail database address ([storage] dsn) is invalid")
    # InternalClientError ("cannot switch to state 12") is what asyncpg raises when the
    # server ended the session (a restart) in the middle of an operation; the store
    # drops that connection, and the next one starts clean.
    if (isinstance(exc, asyncpg.InterfaceError) and connection_gone) or isinstance(
        exc, asyncpg.InternalClientError
    ):
        return StoreTemporaryError("the connection to the mail database was lost")
    return None


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset: nothing to undo (see the module's docstring)."""


def _is_lost(conn: PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        # The pool detaches a proxy from its connection when that connection is lost;
        # nothing else releases it while the block that acquired it is still running.
        return True
