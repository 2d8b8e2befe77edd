"""``popbox demo``: a working server in one command, for trying popbox out.

It writes a configuration into the demo folder (unprivileged loopback ports), creates the
user ``demo`` with password ``demo`` and a few sample messages the first time, prints how
to connect with real clients, and serves until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
from typing import TYPE_CHECKING

from popbox.auth.passwords import verifiers_for
from popbox.config import load
from popbox.node import app
from popbox.store import open_configured
from popbox.store.message import prepare

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.config import Config
    from popbox.net.bind import Listening

__all__ = ["DEMO_PASSWORD", "DEMO_USER", "run"]

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented password of a local trial account
CONFIG_TEXT = """\
# popbox demo configuration: loopback only, unprivileged ports.
data_dir = "."

[pop3]
listen = ["127.0.0.1:1110"]
tls_listen = ["127.0.0.1:1995"]

[lmtp]
listen = ["127.0.0.1:2424"]
"""
SAMPLES = (
    ("Welcome to popbox", "This mailbox is served by popbox over POP3.\n"),
    ("A second message", "Lines that start with a dot are byte-stuffed on the wire:\n.like this\n"),
    ("Exchange-like behaviour", "UIDL gives decimal, increasing unique-ids (C0007).\n"),
)


def run(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "popbox.toml"
    if not config_path.exists():
        config_path.write_text(CONFIG_TEXT, encoding="utf-8")
    config = load(config_path, required=True)
    # One process: a trial needs no worker supervisor, and the connection commands are
    # printed from the ready callback, which only a single-process server calls.
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, workers=1))
    asyncio.run(_provision(config))

    def ready(listening: list[Listening]) -> None:
        print(_instructions(config_path, listening), flush=True)

    asyncio.run(app.serve(config, ready=ready))
    return 0


async def _provision(config: Config) -> None:
    store = open_configured(config)
    await store.open()
    try:
        if await store.get_user(DEMO_USER) is not None:
            return
        await store.add_user(DEMO_USER, verifiers_for(DEMO_PASSWORD))
        for subject, body in SAMPLES:
            raw = (
                f"From: popbox <postmaster@localhost>\nTo: {DEMO_USER}@localhost\n"
                f"Subject: {subject}\nDate: {email.utils.formatdate()}\n"
                f"Message-ID: {email.utils.make_msgid(domain='localhost')}\n\n{body}"
            )
            await store.deliver(DEMO_USER, prepare(raw.encode()))
    finally:
        await store.close()


def _instructions(config_path: Path, listening: list[Listening]) -> str:
    """How to connect, with the addresses the server really listens on (port 0 works)."""
    first = {kind: f"{host}:{port}" for kind, host, port in reversed(listening)}
    lines = [
        f'popbox demo: user "{DEMO_USER}", password "{DEMO_PASSWORD}", configuration {config_path}',
        "",
    ]
    if plain := first.get("pop3"):
        lines += [
            "  List the mailbox over STLS on the plain port (self-signed certificate, hence -k):",
            f"    curl -k --ssl-reqd pop3://{plain}/ -u {DEMO_USER}:{DEMO_PASSWORD}",
        ]
    if implicit := first.get("pop3s"):
        lines += [
            "  Read message 1 over implicit TLS:",
            f"    curl -k pop3s://{implicit}/1 -u {DEMO_USER}:{DEMO_PASSWORD}",
        ]
    if plain:
        lines += [
            "  Talk POP3 by hand:",
            f"    openssl s_client -quiet -starttls pop3 -connect {plain}",
        ]
    return "\n".join([*lines, "", "Press Ctrl-C to stop."]) + "\n"
