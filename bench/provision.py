"""Put the same users and messages into popbox's store and into Dovecot's Maildirs.

Both servers get one argon2id hash per user, computed once here with the same cheap
parameters: popbox stores the PHC string as the user's verifier, Dovecot reads the very
same string from its passwd-file under the ``{ARGON2ID}`` scheme (libsodium).  Hashing
costs the same on both sides, and it is cheap on purpose: with the production cost
(19 MiB, 2 passes) both servers would spend nearly all of a login hashing, and the
benchmark would compare two argon2 libraries instead of two POP3 servers.

Dovecot's Maildir files are written as its own delivery agent writes them: LF line
ends, the file size (``S=``) and the CRLF size (``W=``) in the file name, so that
Dovecot needs no extra pass to learn a message's POP3 size.  popbox gets the CRLF text
through ``popbox.store.message.prepare``, as ``popbox deliver`` would.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import argon2

import payload
from popbox.auth.passwords import ARGON2ID
from popbox.store import open_store
from popbox.store.message import prepare

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["BENCH_ARGON2", "Plan", "hashes", "provision_dovecot", "provision_popbox"]

# argon2id cost for both servers: 64 KiB, one pass, one lane (libsodium's minimum is 8 KiB).
BENCH_ARGON2 = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}
MAIL_UID = 65534  # Dovecot's mail processes run as "nobody", never as root
DELIVER_BATCH = 200

Plan = list[tuple[payload.MailboxKind, list[str], int]]  # (kind, users, messages each)


def hashes(users: Iterable[str]) -> dict[str, str]:
    hasher = argon2.PasswordHasher(type=argon2.Type.ID, **BENCH_ARGON2)
    return {user: hasher.hash(payload.password(user)) for user in users}


async def _fill_popbox(data_dir: Path, plan: Plan, phc: dict[str, str], dsn: str) -> None:
    store = open_store("postgresql" if dsn else "sqlite", data_dir=data_dir, dsn=dsn)
    await store.open()
    try:
        for kind, users, count in plan:
            for user in users:
                await store.add_user(user, {ARGON2ID: phc[user]})
                messages = payload.mailbox(kind, user, count)
                for start in range(0, len(messages), DELIVER_BATCH):
                    batch = messages[start : start + DELIVER_BATCH]
                    if dsn:
                        # Concurrent deliveries commit in any order on PostgreSQL, and the
                        # load generator checks RETR n against message n: one ordered
                        # transaction per batch instead.
                        await store.import_messages(user, [prepare(m) for m in batch])
                    else:
                        await asyncio.gather(*(store.deliver(user, prepare(m)) for m in batch))
    finally:
        await store.close()


def provision_popbox(data_dir: Path, plan: Plan, phc: dict[str, str], dsn: str = "") -> None:
    """Users and messages through the store API: into PostgreSQL at ``dsn``, else into
    the SQLite file in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_fill_popbox(data_dir, plan, phc, dsn))


def provision_dovecot(root: Path, plan: Plan, phc: dict[str, str]) -> Path:
    """Maildirs under ``root/mail/USER/Maildir`` and ``root/passwd``; returns the latter."""
    passwd = root / "passwd"
    lines = []
    for kind, users, count in plan:
        for user in users:
            lines.append(f"{user}:{{ARGON2ID}}{phc[user]}\n")
            maildir = root / "mail" / user / "Maildir"
            for sub in ("cur", "new", "tmp"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            for n, text in enumerate(payload.mailbox(kind, user, count)):
                lf = text.replace(b"\r\n", b"\n")
                # Seconds then microseconds: Dovecot numbers new files in this order.
                name = f"{1_700_000_000 + n}.M{n}P1.bench,S={len(lf)},W={len(text)}:2,"
                (maildir / "cur" / name).write_bytes(lf)
    passwd.write_text("".join(lines))
    passwd.chmod(0o644)
    for directory, _, files in os.walk(root / "mail"):
        os.chown(directory, MAIL_UID, MAIL_UID)
        for name in files:
            os.chown(os.path.join(directory, name), MAIL_UID, MAIL_UID)  # noqa: PTH118
    return passwd
