"""``popbox demo``: a working server in one command, for trying popbox out.

It writes a configuration into the demo folder (unprivileged loopback ports), creates the
user ``demo`` with password ``demo`` and a few sample messages the first time, prints how
to connect with real clients, and serves until Ctrl-C.  The web console is on (on
loopback): its administrator ``admin`` gets a new random password at every start, printed
once and stored only as a hash, so a password seen on a screen earlier is worth nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import secrets
from typing import TYPE_CHECKING

from popbox.auth.passwords import verifiers_for
from popbox.config import load
from popbox.node import app
from popbox.store import open_configured
from popbox.store.message import prepare

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.config import AdminConfig, Config
    from popbox.net.bind import Listening

__all__ = ["DEMO_PASSWORD", "DEMO_USER", "run"]

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented password of a local trial account
CONSOLE_ADMIN = "admin"
CONSOLE_LISTEN = "127.0.0.1:1180"  # where the console goes when the configuration has no [admin]
CONFIG_TEXT = """\
# popbox demo configuration: loopback only, unprivileged ports.
data_dir = "."

[pop3]
listen = ["127.0.0.1:1110"]
tls_listen = ["127.0.0.1:1995"]

[lmtp]
listen = ["127.0.0.1:2424"]

[admin]
listen = ["127.0.0.1:1180"]         # the admin API and the web console, loopback only
users = ["admin"]                   # console administrators
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
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, workers=1),
        admin=_console_on(config.admin),
    )
    admin_password = secrets.token_urlsafe(12)
    asyncio.run(_provision(config, admin_password))
    consoles: list[str] = []

    def announce(line: str) -> None:
        print(line, flush=True)
        if line.startswith("listening admin "):
            consoles.append(line.removeprefix("listening admin "))

    def ready(listening: list[Listening]) -> None:
        print(_instructions(config_path, listening), flush=True)
        if consoles:
            print(_console_login(consoles[0], admin_password), flush=True)

    asyncio.run(app.serve(config, announce=announce, ready=ready))
    return 0


def _console_on(admin: AdminConfig) -> AdminConfig:
    """The configured console, or one on loopback; ``admin`` is one of its administrators."""
    return dataclasses.replace(
        admin,
        listen=admin.listen or (CONSOLE_LISTEN,),
        console=True,
        users=admin.users if CONSOLE_ADMIN in admin.users else (*admin.users, CONSOLE_ADMIN),
    )


def _console_login(address: str, password: str) -> str:
    return (
        f"Web console: http://{address}/console\n"
        f'  log in as "{CONSOLE_ADMIN}" with password "{password}"'
        " (new at every start, shown only now)\n"
    )


async def _provision(config: Config, admin_password: str) -> None:
    store = open_configured(config)
    await store.open()
    try:
        admin_verifiers = verifiers_for(admin_password)
        if await store.get_user(CONSOLE_ADMIN) is None:
            await store.add_user(CONSOLE_ADMIN, admin_verifiers)
        else:
            await store.set_verifiers(CONSOLE_ADMIN, admin_verifiers)
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
