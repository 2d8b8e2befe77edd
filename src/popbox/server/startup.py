"""Starting a node: what is checked and created once, before a connection is accepted.

Theory of operation: before a server accepts anything it needs its data directory, its
TLS certificate (generated in ``data_dir/tls`` on a first start), its auth secret and
its mail store (created and migrated on a first start).  ``tls_holder``,
``auth_registry`` and ``open_store_at_start`` make each of them.  A single process
(``workers = 1``) calls them and starts accepting.  With several workers the supervisor
calls ``prepare`` before it starts any worker, and keeps the store open until every
worker has opened its own: so what a first start creates is created by one process
(two workers each writing a certificate left a key that did not match the certificate,
or served two certificates; one worker creating the database while the other opened it
got SQLITE_BUSY), and a bad file or setting is one line from the supervisor instead of a
traceback from every worker.  The workers then call the same functions and find
everything in place.

Every failure is a ``StartupError`` or a ``TlsConfigError``, whose message is one line
naming the file, key or address at fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from popbox.auth.registry import build_registry
from popbox.server.tls import TlsContextHolder, acme_certificate, load_or_create_certificate
from popbox.store import SQLITE_FILE_NAME, open_configured
from popbox.store.base import StoreError, StoreTemporaryError

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.passwords import PasswordVerifier
    from popbox.auth.registry import Registry
    from popbox.config import Config
    from popbox.net.bind import Bound
    from popbox.store.base import MailStore

__all__ = [
    "StartupError",
    "auth_registry",
    "close_listeners",
    "ensure_data_dir",
    "open_store_at_start",
    "prepare",
    "tls_holder",
]

_RETRY_FIRST = 0.05  # seconds before the first retry of a busy store; doubles each time
_RETRY_MAX = 1.0


class StartupError(Exception):
    """The node cannot start; the message is one line naming the file, key or address."""


def ensure_data_dir(config: Config) -> None:
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"data_dir: cannot create {config.data_dir}: {exc.strerror or exc}"
        raise StartupError(msg) from exc


def tls_holder(config: Config) -> TlsContextHolder | None:
    """The TLS context the POP3 listeners (STLS and port 995) and an HTTPS admin
    listener use, None without any of them.

    Generates the self-signed certificate when ``[tls]`` names none (nor an ACME CA)
    and there is no usable one yet.  Raises ``TlsConfigError`` naming the file.
    """
    if not (config.pop3.tls_listen or config.pop3.listen or config.admin.tls):
        return None
    if config.tls.acme_directory:
        # Obtained before this runs, by the node's AcmeManager (popbox/acme/manager.py).
        return TlsContextHolder(*acme_certificate(config.data_dir))
    cert, key = load_or_create_certificate(
        config.tls.cert_file, config.tls.key_file, config.data_dir
    )
    return TlsContextHolder(cert, key)


def auth_registry(config: Config, *, passwords: PasswordVerifier | None = None) -> Registry:
    """The SASL mechanisms, with the auth secret read (or generated on a first start);
    ``passwords`` is the server's password verifier (``build_registry``)."""
    try:
        return build_registry(config, passwords=passwords)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise StartupError(f"auth: {where}{exc.strerror or exc}") from exc
    except ValueError as exc:
        raise StartupError(f"auth: {exc}") from exc


async def open_store_at_start(
    config: Config, *, patience: float = 0.0, clock: Callable[[], float] = time.time
) -> MailStore:
    """The configured store, open (created and migrated if it is new); ``clock`` (POSIX
    seconds) is the one its leases and stamps read.

    A temporary failure (a database busy with another process) is tried again until
    ``patience`` seconds have passed.  Raises ``StartupError`` naming the store.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = _RETRY_FIRST
    while True:
        store = open_configured(config, clock=clock)
        try:
            await store.open()
        except StoreTemporaryError as exc:
            if loop.time() + delay > deadline:
                raise StartupError(f"{_store_name(config)}: {exc}") from exc
        except StoreError as exc:
            raise StartupError(f"{_store_name(config)}: {exc}") from exc
        else:
            return store
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)


async def prepare(config: Config) -> MailStore:
    """Check and create, once, everything the workers need; returns the open store.

    The caller closes the store once every worker has opened its own: while one
    connection holds a SQLite database open, the others do not have to recover its
    write-ahead log when they open it.
    """
    ensure_data_dir(config)
    tls_holder(config)
    auth_registry(config)
    return await open_store_at_start(config)


def close_listeners(bound: list[Bound]) -> None:
    """Close the listening sockets bound at start, and remove unix sockets' paths."""
    for _, sock in bound:
        if sock.family == socket.AF_UNIX:  # the servers leave the path to whoever bound it
            with contextlib.suppress(OSError):
                Path(sock.getsockname()).unlink()
        sock.close()


def _store_name(config: Config) -> str:
    if config.storage.backend == "sqlite":
        return f"storage: {config.data_dir / SQLITE_FILE_NAME}"
    return "storage.dsn" if config.storage.backend == "postgresql" else "storage"
