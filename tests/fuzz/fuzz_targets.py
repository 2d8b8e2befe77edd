"""Fuzz targets: the sans-IO POP3 core and the SASL decoders, one function per target.

Each target takes arbitrary bytes and raises only when popbox has a bug: the POP3
connection must answer anything with well-formed replies and never raise; a mechanism
must answer every client message with a Challenge, Success or Failure (never an
exception: STYLE s3, a mechanism's refusal is a value); the NTLM message parsers may
raise ``MalformedMessage`` and nothing else.  The same targets run under hypothesis
(``test_fuzz.py``, in every test run) and under atheris (``atheris_main.py``,
coverage-guided, for a bounded time in the test run and for as long as you like by
hand); their inputs start from ``corpus/<target>/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from popbox.auth.base import AuthContext, Challenge, Failure, Success
from popbox.auth.jwks import JwksCache
from popbox.auth.login import LoginMechanism
from popbox.auth.ntlm import NtlmMechanism, NtlmSettings, target_names
from popbox.auth.ntlm_messages import (
    Flag,
    MalformedMessage,
    parse_authenticate,
    parse_av_pairs,
    parse_negotiate,
)
from popbox.auth.oauth import OAuthBearerMechanism, OAuthSettings, TokenChecker, XOAuth2Mechanism
from popbox.auth.passwords import Argon2Params, PasswordVerifier, verifiers_for
from popbox.auth.plain import PasswordSettings, PlainMechanism
from popbox.auth.scram import ScramMechanism, ScramSettings
from popbox.protocol.connection import ConnectionSettings, Pop3Connection, Signal
from popbox.protocol.testing import Responder, message_info
from popbox.store.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.base import Mechanism

__all__ = ["TARGETS"]

# Cheap hashing: the fuzzer should spend its time in the decoders, not in argon2.
CHEAP = Argon2Params(time_cost=1, memory_cost_kib=64)
PASSWORD = "secret"
SEPARATOR = b"\n"  # splits one input into the successive client messages of an exchange
WIRE = b"Subject: one\r\n\r\nbody\r\n..dot\r\n"
MESSAGES = [(message_info(1, len(WIRE) - 1), WIRE), (message_info(2, 14), b"Subject: 2\r\n\r\n")]
LOGIN_TYPES = ("plaintext_login", "plaintext_authentication", "secure_login")
MAX_REPLY_LINE = 512  # C0001: status and listing lines, CRLF included


def pop3(data: bytes) -> None:
    """Any bytes, split anywhere, into a connection whose events are all answered."""
    head, body = (data[0], data[1:]) if data else (0, b"")
    settings = ConnectionSettings(
        login_type=LOGIN_TYPES[head % 3],  # type: ignore[arg-type]
        max_command_size=40 + (head * 37) % 985,
        sasl_mechanisms=(("PLAIN", True), ("GSSAPI", False)),
        max_bad_commands=10,
        single_space=bool(head & 0x80),
        stls_available=bool(head & 0x40),
    )
    conn = Pop3Connection(settings)
    respond = Responder(user="alice", password=PASSWORD, messages=MESSAGES)
    output = bytearray(b"".join(conn.data_to_send()))
    step = 1 + head % 17
    closed = False
    for start in range(0, len(body), step):
        conn.receive_data(body[start : start + step])
        for _ in range(10_000):  # bounded: each event consumes input or ends the session
            event = conn.next_event()
            closed = event is Signal.CLOSED
            if event is Signal.NEED_DATA or closed:
                break
            assert not isinstance(event, Signal)
            respond(conn, event)
        else:
            raise AssertionError("10,000 events from one chunk of input")
        output += b"".join(conn.data_to_send())
        if closed:
            break
    _check_replies(bytes(output))


def _check_replies(output: bytes) -> None:
    assert not output or output.endswith(b"\r\n"), output[-80:]
    for line in output.split(b"\r\n"):
        if line.startswith((b"+OK", b"-ERR")):
            assert len(line) + 2 <= MAX_REPLY_LINE, line[:80]


class _Mechanisms:
    """One event loop and one store for every mechanism exchange of a fuzzing process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        store = MemoryStore()
        self.loop.run_until_complete(store.add_user("alice", verifiers_for(PASSWORD, CHEAP)))
        self.context = AuthContext(store=store, peer="127.0.0.1:1", tls_active=True)
        keys = Path(tempfile.mkdtemp(prefix="popbox-fuzz-")) / "jwks.json"
        public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        jwk = {**json.loads(RSAAlgorithm.to_jwk(public)), "kid": "k1", "alg": "RS256"}
        keys.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
        self.oauth = TokenChecker(
            OAuthSettings(issuer="https://issuer.test", audience="popbox", algorithms=("RS256",)),
            JwksCache(str(keys)),
        )
        password = PasswordSettings(verifier=PasswordVerifier(CHEAP))
        self.factories: dict[str, Callable[[], Mechanism]] = {
            "plain": lambda: PlainMechanism(self.context, password),
            "login": lambda: LoginMechanism(self.context, password),
            "scram": lambda: ScramMechanism(self.context, ScramSettings(b"k" * 32, 4096)),
            "ntlm": lambda: NtlmMechanism(
                self.context, NtlmSettings(target_names("EXAMPLE", "mail.example.com"))
            ),
            "oauthbearer": lambda: OAuthBearerMechanism(self.context, self.oauth),
            "xoauth2": lambda: XOAuth2Mechanism(self.context, self.oauth),
        }

    def exchange(self, name: str, data: bytes) -> None:
        """The first byte says whether there is an initial response; the rest, split at
        ``SEPARATOR``, are the client's messages, sent while the server challenges."""
        mechanism = self.factories[name]()
        messages = data[1:].split(SEPARATOR)[:6] if data else [b""]
        initial = messages.pop(0) if data and data[0] & 1 else None
        step = self.loop.run_until_complete(mechanism.start(initial))
        for message in messages:
            assert isinstance(step, Challenge | Success | Failure), step
            if not isinstance(step, Challenge):
                return
            step = self.loop.run_until_complete(mechanism.step(message))
        assert isinstance(step, Challenge | Success | Failure), step


_MECHANISMS: list[_Mechanisms] = []  # made on first use: atheris forks no workers


def _mechanism(name: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        if not _MECHANISMS:
            _MECHANISMS.append(_Mechanisms())
        _MECHANISMS[0].exchange(name, data)

    target.__name__ = name
    return target


def ntlm_messages(data: bytes) -> None:
    """The NTLM parsers on their own: ``MalformedMessage`` is the only refusal."""
    flags = Flag(int.from_bytes(data[:4].ljust(4, b"\0"), "little") & sum(Flag))
    for parse in (parse_negotiate, lambda raw: parse_authenticate(raw, flags), parse_av_pairs):
        with contextlib.suppress(MalformedMessage):
            parse(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pop3": pop3,
    "ntlm_messages": ntlm_messages,
    **{name: _mechanism(name) for name in ("plain", "login", "scram", "ntlm")},
    **{name: _mechanism(name) for name in ("oauthbearer", "xoauth2")},
}
