"""Clients for the kill -9 torture test, and the ledger of what the server told them.

Theory of operation: LMTP senders deliver messages, each carrying a unique token, and
write down the reply: 250 (acknowledged), a 4xx/5xx (refused), or none (the connection
dropped: the outcome is unknown, and an MTA would retry).  POP3 readers log in, RETR
(checking each body is whole and the one delivered under its token), DELE some and
QUIT, and write down the QUIT reply for the tokens they marked: +OK (removed), -ERR
(kept), or none (unknown).  Meanwhile the server is killed.  ``Ledger.reconcile`` then
compares that record with what the store holds: every claim the server made must be
true, and nothing acknowledged may be missing or doubled.  Every socket operation has a
timeout and every loop ends when ``stop`` is set.
"""

from __future__ import annotations

import collections
import poplib
import random
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailserver import LmtpClient, stuff
from popbox_servers import USERS

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Ledger", "Target", "deliver", "lmtp_sender", "message", "pop3_reader", "token_of"]

TIMEOUT = 10.0
_TOKEN = re.compile(rb"^Subject: torture (\d+)\r$", re.MULTILINE)


def message(token: int) -> bytes:
    """The message for ``token``: its length and every line depend on the token."""
    lines = b"".join(b"token %d line %d\r\n" % (token, n) for n in range(5 + token % 40))
    return b"Subject: torture %d\r\nMessage-ID: <%d@torture.test>\r\n\r\n" % (token, token) + lines


def token_of(wire: bytes) -> int:
    """The token of a stored or retrieved message; fails if the body is not whole."""
    found = _TOKEN.search(wire)
    assert found, f"a message without its token: {wire[:200]!r}"
    token = int(found.group(1))
    assert wire.endswith(message(token).split(b"\r\n\r\n", 1)[1]), f"message {token} altered"
    return token


@dataclass
class Target:
    """Where the server listens now; a restart moves it (port 0)."""

    pop3: int = 0
    lmtp: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ports(self) -> tuple[int, int]:
        with self.lock:
            return self.pop3, self.lmtp

    def move(self, pop3: int, lmtp: int) -> None:
        with self.lock:
            self.pop3, self.lmtp = pop3, lmtp


@dataclass
class Ledger:
    """What each client was told, per token."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[int, str] = field(default_factory=dict)  # token -> mailbox
    acked: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)  # DELE'd, QUIT +OK
    kept: set[int] = field(default_factory=set)  # DELE'd, QUIT -ERR
    maybe_removed: set[int] = field(default_factory=set)  # DELE'd, QUIT sent, no reply
    retrieved: int = 0
    sessions: int = 0

    def reconcile(self, stored: Iterable[int]) -> list[str]:
        """Every way the store contradicts what the server said (empty: none)."""
        counted = collections.Counter(stored)
        problems = [f"stored twice: {t}" for t, n in sorted(counted.items()) if n > 1]
        here = set(counted)
        problems += [f"never sent: {t}" for t in sorted(here - self.sent.keys())]
        gone = self.removed | self.maybe_removed
        problems += [f"acknowledged, then lost: {t}" for t in sorted(self.acked - here - gone)]
        problems += [f"refused (4xx/5xx), yet stored: {t}" for t in sorted(self.refused & here)]
        problems += [f"QUIT said +OK, still there: {t}" for t in sorted(self.removed & here)]
        falsely_kept = self.kept - here - self.removed - self.maybe_removed
        problems += [f"QUIT said -ERR, yet removed: {t}" for t in sorted(falsely_kept)]
        return problems


def lmtp_sender(
    target: Target, ledger: Ledger, tokens: Iterable[int], stop: threading.Event
) -> None:
    """One delivery per token until ``stop``: LHLO, MAIL, RCPT, DATA, reply."""
    rng = random.Random(threading.get_ident())  # noqa: S311 - a test's choices, no secret
    for token in tokens:
        if stop.is_set():
            return
        user = rng.choice(sorted(USERS))
        with ledger.lock:
            ledger.sent[token] = user
        outcome = deliver(target.ports()[1], user, token)
        with ledger.lock:
            if outcome == "250":
                ledger.acked.add(token)
            elif outcome is not None:
                ledger.refused.add(token)
        if outcome is None:
            stop.wait(0.05)  # the server is down or restarting: try the next one soon


def deliver(port: int, user: str, token: int) -> str | None:
    """The reply's code, or None if the connection went before the reply came."""
    try:
        client = LmtpClient(("127.0.0.1", port))
    except (OSError, AssertionError):  # refused, or closed before the greeting
        return None
    try:
        client.command("LHLO torture.test")
        client.command("MAIL FROM:<mta@torture.test>")
        if not client.command(f"RCPT TO:<{user}>").startswith("250"):
            return None  # refused before DATA: nothing can have been stored (not sent)
        if not client.command("DATA").startswith("354"):
            return None
        client.send(stuff(message(token)) + b".\r\n")
        reply = client.reply()
    except (OSError, AssertionError):
        return None
    finally:
        client.close()
    return reply[:3]


def pop3_reader(target: Target, ledger: Ledger, seed: int, stop: threading.Event) -> None:
    """Sessions until ``stop``: RETR some messages, DELE some, QUIT."""
    rng = random.Random(seed)  # noqa: S311 - a test's choices, no secret
    while not stop.is_set():
        user = rng.choice(sorted(USERS))
        try:
            _session(target.ports()[0], user, ledger, rng)
        except (OSError, EOFError, poplib.error_proto):
            stop.wait(0.05)  # dropped before QUIT: this session removed nothing


class _Pop3(poplib.POP3):
    """``poplib.POP3`` that closes its socket when the greeting never comes."""

    def __init__(self, port: int) -> None:
        try:
            super().__init__("127.0.0.1", port, timeout=TIMEOUT)
        except BaseException:
            # Connected, then the server was killed before or during the greeting.
            if hasattr(self, "file"):
                self.close()
            elif hasattr(self, "sock"):
                self.sock.close()
            raise


def _session(port: int, user: str, ledger: Ledger, rng: random.Random) -> None:
    client = _Pop3(port)
    try:
        client.user(user)
        client.pass_(USERS[user])
        count, _ = client.stat()
        marked: list[int] = []
        for msg in rng.sample(range(1, count + 1), min(count, 4)):
            try:
                lines = client.retr(msg)[1]
            except poplib.error_proto as exc:
                if isinstance(exc.args[0], bytes):
                    continue  # removed by another session since login: -ERR (C0004)
                raise
            token = token_of(b"\r\n".join(lines) + b"\r\n")
            with ledger.lock:
                ledger.retrieved += 1
            if rng.random() < 0.6:
                client.dele(msg)
                marked.append(token)
        _quit(client, marked, ledger)
    finally:
        client.close()


def _quit(client: poplib.POP3, marked: list[int], ledger: Ledger) -> None:
    try:
        client.quit()
        verdict = "removed"
    except poplib.error_proto as exc:
        # poplib reports a closed connection as the str "-ERR EOF"; a reply is bytes.
        verdict = "kept" if isinstance(exc.args[0], bytes) else "unknown"
    except (OSError, EOFError):
        verdict = "unknown"
    with ledger.lock:
        told = {"removed": ledger.removed, "kept": ledger.kept, "unknown": ledger.maybe_removed}
        told[verdict].update(marked)
        ledger.sessions += 1
