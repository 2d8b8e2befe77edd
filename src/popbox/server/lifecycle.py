"""Reloading the configuration and certificates of a running server (SIGHUP).

What a reload changes at once, without dropping a session: the TLS certificate and key
(re-read from the same files), every ``[pop3]`` setting but the listen addresses (banner,
timeouts, login_type, lock_mailbox, max_command_size, ...: each new connection uses
the new values, and running sessions read their timeouts afresh), the ``[server]``
limits, ``trusted_proxies`` and ``protocol_log_users``.

What needs a restart, because it is built once at start: the listen addresses
(``pop3.listen``, ``pop3.tls_listen``, ``[lmtp]``), ``data_dir`` and ``[storage]``, the
certificate *paths* in ``[tls]``, ``[auth]`` (mechanisms and their secrets),
``server.workers``, ``server.metrics_listen``, ``server.json_logs``, ``[admin]`` and
``server.log_level``.  A reload that changes one of those keeps the running value and
logs which keys were not applied.

A reload with a configuration that does not validate changes nothing and logs why.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from popbox.config import ConfigError, load
from popbox.server.limits import LimitSettings
from popbox.server.tls import TlsConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.config import Config
    from popbox.server.context import ServerContext

__all__ = ["RESTART_KEYS", "RESTART_SECTIONS", "apply_config", "merge_reload", "reload"]

# The LMTP delivery agent and the retention sweeper read [quota] and [retention] once at
# start, so a reload keeps them (and CAPA's EXPIRE) as they were and says so in the log.
RESTART_SECTIONS = ("data_dir", "storage", "tls", "lmtp", "auth", "quota", "retention", "admin")
RESTART_KEYS = {
    "pop3": ("listen", "tls_listen"),
    "server": ("workers", "metrics_listen", "json_logs", "log_level"),
}


def merge_reload(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """The configuration to run after a reload, and the changed keys it could not apply."""
    ignored: list[str] = []
    kept: dict[str, object] = {}
    for name in RESTART_SECTIONS:
        if getattr(running, name) != getattr(loaded, name):
            ignored.append(name)
        kept[name] = getattr(running, name)
    for section, keys in RESTART_KEYS.items():
        old, new = getattr(running, section), getattr(loaded, section)
        restored = {}
        for key in keys:
            if getattr(old, key) != getattr(new, key):
                ignored.append(f"{section}.{key}")
            restored[key] = getattr(old, key)
        kept[section] = dataclasses.replace(new, **restored)
    return dataclasses.replace(loaded, **kept), ignored  # type: ignore[arg-type]


def apply_config(context: ServerContext, config: Config) -> None:
    """Make ``config`` current for everything that reads it per connection or per use."""
    context.config = config
    context.limits.configure(LimitSettings.from_config(config.server))
    context.budget.limit = config.server.memory_budget  # bodies already held stay held


def reload_tls(context: ServerContext) -> bool:
    """Re-read the certificate files; on failure the previous certificate stays in use."""
    if context.tls is None:
        return True
    try:
        context.tls.reload()
    except TlsConfigError as exc:
        context.log.error("tls_reload_failed", error=str(exc))  # noqa: TRY400 - no traceback needed
        return False
    context.log.info("tls_reloaded", cert=str(context.tls.cert_path))
    return True


def reload(context: ServerContext, path: Path | None) -> Config | None:
    """SIGHUP: re-read ``path`` (if the server was started from a file) and the certificate.

    Returns the configuration now in force, or None when the file did not validate (the
    running configuration then stays as it was).
    """
    reload_tls(context)
    if path is None:
        return context.config
    try:
        loaded = load(path, required=True)
    except ConfigError as exc:
        context.log.error("config_reload_failed", error=str(exc))  # noqa: TRY400 - names the key
        return None
    config, ignored = merge_reload(context.config, loaded)
    apply_config(context, config)
    context.log.info("config_reloaded", path=str(path), needs_restart=ignored or None)
    return config
