"""What every store-using ``popbox`` subcommand shares: the config file and the store.

Errors an operator can fix are printed as one line naming the problem, exit status 1.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popbox.auth.passwords import Argon2Params, PasswordVerifier
from popbox.clock import SystemClock
from popbox.config import default_config_path, load
from popbox.directory.factory import DirectoryDeps, build_chain
from popbox.observability.log import make_logger
from popbox.store import open_configured
from popbox.store.base import StoreError, UnknownUser

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine

    from popbox.config import Config
    from popbox.directory.chain import DirectoryChain
    from popbox.store.base import MailStore

__all__ = ["directory_chain", "load_config", "open_configured_store", "with_store"]


def load_config(args: argparse.Namespace) -> Config:
    """``--config FILE`` (which must exist), else ``$POPBOX_CONFIG``, else ``./popbox.toml``."""
    path = Path(args.config) if args.config else default_config_path()
    return load(path, required=bool(args.config))


async def open_configured_store(config: Config) -> MailStore:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_configured(config)
    await store.open()
    return store


def directory_chain(config: Config, store: MailStore) -> DirectoryChain:
    """The configured directories, as ``popbox serve`` builds them (logging to stderr)."""
    verifier = PasswordVerifier(Argon2Params.from_config(config.auth))
    log = make_logger(json=config.server.json_logs, level="warning", stream=sys.stderr)
    return build_chain(DirectoryDeps(store, verifier, log, SystemClock(), config))


def with_store(
    args: argparse.Namespace, work: Callable[[MailStore, Config], Coroutine[Any, Any, int]]
) -> int:
    """Run ``work`` with the configured store open; its result is the exit status."""
    config = load_config(args)

    async def run() -> int:
        store = await open_configured_store(config)
        try:
            return await work(store, config)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except UnknownUser as exc:
        print(f"popbox: no such user: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
    except StoreError as exc:
        print(f"popbox: store error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
    except (OSError, ValueError) as exc:
        print(f"popbox: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
    return 1
