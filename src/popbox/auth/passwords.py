"""Password hashing and verification: the only module that sees plaintext secrets.

Theory of operation: users' passwords are stored as argon2id PHC strings
(`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). The stored string carries its own cost
parameters, so changing `Argon2Params` affects new hashes only; `needs_rehash` tells the
caller when a successful login is a chance to store a hash with the current parameters.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory on purpose, so a
`PasswordVerifier` runs it in a worker thread: one slow login must not stall every other
session on the event loop. argon2-cffi releases the GIL while hashing, so logins on
different threads really run in parallel. A stored hash whose own parameters make it
very cheap (at most `INLINE_COST` KiB x passes, e.g. one imported with test settings)
is checked on the caller's thread instead: the hand-off to a thread and back costs more
than such a hash (measured with bench/).

Unknown users (V0008, V0009): the session looks the user up and passes `None` as the
stored hash when there is none. We then verify against a dummy hash with the configured
parameters (one that no password matches) and return False. A stored hash made with
other parameters (imported, or made by an older version) would cost a different time,
and a cheaper one would tell an attacker that the user exists; so such a check is padded
up to what a check at the configured cost takes (`PasswordVerifier.verify` says how),
and a successful login replaces the hash with one at the configured cost
(`needs_rehash`), which ends the padding for that user.

SCRAM-SHA-256 (RFC 5802/7677) cannot use the argon2id hash: the client proves knowledge
of ``PBKDF2-HMAC-SHA-256(SASLprep(password), salt, i)``, so the server keeps that
derivation's StoredKey and ServerKey in RFC 5803 form (``SCRAM-SHA-256$i:salt$Stored:Server``),
made here at password-set time; the password itself is never stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import argon2
import argon2.low_level
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from Crypto.Hash import MD4

from popbox.config import AuthConfig
from popbox.directory.schemes import INLINE_COST, argon2_cost
from popbox.protocol.mechanisms import NTLM as NTLM_MECHANISM
from popbox.protocol.mechanisms import SCRAM_SHA_256 as SCRAM_MECHANISM
from popbox.protocol.saslprep import saslprep
from popbox.store.base import ARGON2ID_VERIFIER

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ARGON2ID",
    "DEFAULT_PARAMS",
    "NT",
    "SCRAM_SHA256",
    "Argon2Params",
    "PasswordVerifier",
    "ScramVerifier",
    "hash_password",
    "needs_rehash",
    "nt_hash",
    "parse_scram_verifier",
    "scram_verifier",
    "verifiers_for",
]

# Key of the argon2id PHC string in the verifier map a user record stores.
ARGON2ID: Final = ARGON2ID_VERIFIER
# Key of the RFC 5803 SCRAM-SHA-256 verifier.
SCRAM_SHA256: Final = "scram-sha-256"
SCRAM_SALT_LEN: Final = 16
# Key of the NT hash NTLM checks responses against (MD4 of the UTF-16LE password, in hex).
# Unsalted and password-equivalent for NTLM, so it is only made while NTLM is offered.
NT: Final = "nt"
# Checks at the configured cost whose median duration pads checks of other hashes.
PADDING_SAMPLES: Final = 15
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost parameters for new hashes.

    The defaults are OWASP's first recommended configuration for argon2id (19 MiB,
    2 iterations, 1 lane): strong enough for stored credentials, cheap enough that a
    mail server fielding many short POP3 logins per second is not memory-bound.
    """

    time_cost: int = 2
    memory_cost_kib: int = 19 * 1024
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        # RFC 9106 s3.1 bounds; argon2 would reject these later, and less clearly.
        if self.time_cost < 1:
            raise ValueError("time_cost must be at least 1")
        if self.parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError("memory_cost_kib must be at least 8 * parallelism")
        if self.hash_len < 16 or self.salt_len < 16:
            raise ValueError("hash_len and salt_len must be at least 16 bytes")

    @classmethod
    def from_config(cls, auth: AuthConfig) -> Argon2Params:
        """The ``[auth] argon2_*`` settings."""
        return cls(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism)


DEFAULT_PARAMS: Final = Argon2Params()


def hash_password(password: str, params: Argon2Params = DEFAULT_PARAMS) -> str:
    """Return an argon2id PHC string for `password` with a fresh random salt.

    Blocking (tens of milliseconds): fine for `popbox user add`, not on the event loop.
    """
    return _hasher(params).hash(password)


class PasswordVerifier:
    """Checks passwords against stored argon2id hashes, each at the configured cost.

    One per server (built with the server's parameters and shared by USER/PASS and the
    SASL password mechanisms), because it learns how long a check at the configured
    cost takes on this machine.  ``clock`` gives monotonic seconds.
    """

    def __init__(
        self, params: Argon2Params = DEFAULT_PARAMS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.params: Final = params
        self._hasher = _hasher(params)
        self._dummy = _dummy_hash(params)
        self._cost = params.memory_cost_kib * params.time_cost
        self._clock = clock
        # How long the latest checks at the configured cost took, start to answer.
        self._recent: deque[float] = deque(maxlen=PADDING_SAMPLES)

    async def verify(self, phc: str | None, password: str) -> bool:
        """Return True when `password` matches the stored hash `phc`.

        `phc is None` means the user does not exist: the result is always False, after
        the same work as a real check (V0009). A stored hash that cannot be parsed counts
        as a mismatch too, after the same work, rather than an error a client could tell
        apart. A stored hash is checked with the cost parameters written in it; when they
        are not the configured ones, the answer waits until a check at the configured
        cost would have answered.

        Why padding by waiting: argon2id's time is not proportional to memory x passes
        (cache misses grow with memory), so padding a cheap check with a further argon2id
        run of the "missing" cost misses by tens of percent; the median of the latest
        checks at the configured cost, measured here, tracks this machine and its load.
        A stored hash costlier than the configured one cannot be matched by the dummy
        (its cost is unknown for an unknown user): it answers later until its user's
        next login rehashes it.
        """
        started = self._clock()
        verdict = None if phc is None else await self._check_stored(phc, password)
        if phc is None or verdict is None:
            await self._run(self._cost, self._verify_dummy, password)
            self._recent.append(self._clock() - started)
            return False
        if self.needs_rehash(phc):
            await self._pad(started, password)
        else:
            self._recent.append(self._clock() - started)
        return verdict

    def needs_rehash(self, phc: str) -> bool:
        """Tell whether `phc` was made with other parameters (or another algorithm)."""
        return needs_rehash(phc, self.params)

    async def rehash(self, password: str) -> str:
        """A fresh hash of `password` at the configured cost, made off the event loop."""
        return await asyncio.to_thread(hash_password, password, self.params)

    async def _check_stored(self, phc: str, password: str) -> bool | None:
        return await self._run(argon2_cost(phc), _verify_stored, self._hasher, phc, password)

    async def _pad(self, started: float, password: str) -> None:
        """Wait until a check at the configured cost, begun at `started`, would answer."""
        if not self._recent:  # nothing measured yet: do the work once, and learn from it
            begun = self._clock()
            await self._run(self._cost, self._verify_dummy, password)
            self._recent.append(self._clock() - begun)
            return
        remaining = statistics.median(self._recent) - (self._clock() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _verify_dummy(self, password: str) -> None:
        with contextlib.suppress(VerifyMismatchError):
            self._hasher.verify(self._dummy, password)

    async def _run(self, cost: int, check: Callable[..., _T], *args: Any) -> _T:
        if cost <= INLINE_COST:
            return check(*args)
        return await asyncio.to_thread(check, *args)


def needs_rehash(phc: str, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """Tell whether `phc` was made with other parameters (or another algorithm).

    Call it after a successful `PasswordVerifier.verify`; if True, store
    `hash_password(password)` in its place while the plaintext is at hand.
    """
    try:
        return _hasher(params).check_needs_rehash(phc)
    except InvalidHashError:
        return True


def verifiers_for(
    password: str, params: Argon2Params | None = None, *, auth: AuthConfig | None = None
) -> dict[str, str]:
    """Return every stored verifier derived from `password`, keyed by scheme.

    `popbox user add` and `user passwd` store this map, so each SASL mechanism finds
    the verifier it needs without the plaintext ever being stored.  With no ``params``
    the argon2id hash has ``auth``'s ``argon2_*`` settings.  Verifiers weaker
    than argon2id (SCRAM's PBKDF2) are only made for mechanisms ``auth`` offers; with
    no ``auth`` the default mechanisms count.
    """
    auth = AuthConfig() if auth is None else auth
    params = Argon2Params.from_config(auth) if params is None else params
    verifiers = {ARGON2ID: hash_password(password, params)}
    if SCRAM_MECHANISM in auth.mechanisms:
        with contextlib.suppress(ValueError):  # not SASLprep-able: SCRAM cannot be used
            verifiers[SCRAM_SHA256] = scram_verifier(password, auth.scram_iterations)
    if NTLM_MECHANISM in auth.mechanisms:
        verifiers[NT] = nt_hash(password)
    return verifiers


def nt_hash(password: str) -> str:
    """NTOWFv1 ([MS-NLMP] 3.3.1): MD4 of the UTF-16LE password, as hex."""
    return MD4.new(password.encode("utf-16-le", "surrogatepass")).hexdigest()  # noqa: S303


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What the server keeps for SCRAM-SHA-256 (RFC 5802 s3): no password equivalent."""

    iterations: int
    salt: bytes
    stored_key: bytes  # H(ClientKey)
    server_key: bytes  # HMAC(SaltedPassword, "Server Key")

    def __str__(self) -> str:
        """RFC 5803 s3: ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>``."""
        b64 = _b64std
        return (
            f"SCRAM-SHA-256${self.iterations}:{b64(self.salt)}"
            f"${b64(self.stored_key)}:{b64(self.server_key)}"
        )


def scram_verifier(password: str, iterations: int, salt: bytes | None = None) -> str:
    """The RFC 5803 SCRAM-SHA-256 verifier of `password` (SASLprep'd) with a fresh salt.

    Raises ValueError when SASLprep prohibits a character of the password.  Blocking:
    PBKDF2 with `iterations` rounds.
    """
    salt = secrets.token_bytes(SCRAM_SALT_LEN) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    return str(ScramVerifier(iterations, salt, stored_key, server_key))


def parse_scram_verifier(text: str) -> ScramVerifier | None:
    """Read an RFC 5803 SCRAM-SHA-256 verifier; None when it is not one."""
    scheme, _, rest = text.partition("$")
    params, _, keys = rest.partition("$")
    iterations, _, salt = params.partition(":")
    stored, _, server = keys.partition(":")
    if scheme != "SCRAM-SHA-256" or not iterations.isdigit():
        return None
    try:
        decoded = [base64.b64decode(part, validate=True) for part in (salt, stored, server)]
    except (binascii.Error, ValueError):
        return None
    if not decoded[0] or any(len(key) != hashlib.sha256().digest_size for key in decoded[1:]):
        return None
    return ScramVerifier(int(iterations), *decoded)


def _verify_stored(hasher: argon2.PasswordHasher, phc: str, password: str) -> bool | None:
    """The verdict of the stored hash, or None when it cannot be read."""
    try:
        return hasher.verify(phc, password)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        return None


def _hasher(params: Argon2Params) -> argon2.PasswordHasher:
    # Built per call: construction only stores the parameters, which is nothing next
    # to the hash itself, and keeps this module free of shared state.
    return argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=argon2.Type.ID,
    )


def _dummy_hash(params: Argon2Params) -> str:
    """Return a well-formed argon2id hash with `params` that no password matches.

    Verifying against it costs exactly one argon2id computation with these
    parameters. Its digest is all zero bytes, not the hash of anything: finding a
    password that hashes to it would be a preimage attack on argon2id.
    """
    salt = _b64(bytes(params.salt_len))
    digest = _b64(bytes(params.hash_len))
    cost = f"m={params.memory_cost_kib},t={params.time_cost},p={params.parallelism}"
    return f"$argon2id$v={argon2.low_level.ARGON2_VERSION}${cost}${salt}${digest}"


def _b64(data: bytes) -> str:
    # PHC strings use standard base64 without padding.
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64std(data: bytes) -> str:
    # RFC 5803 uses standard base64 with padding.
    return base64.b64encode(data).decode("ascii")
