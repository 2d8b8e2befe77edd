"""Password hashing and verification: the only module that sees plaintext secrets.

Theory of operation: users' passwords are stored as argon2id PHC strings
(`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). The stored string carries its own cost
parameters, so changing `Argon2Params` affects new hashes only; `needs_rehash` tells the
caller when a successful login is a chance to store a hash with the current parameters.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory on purpose, so
`verify_password` runs it in a worker thread: one slow login must not stall every other
session on the event loop. argon2-cffi releases the GIL while hashing, so logins on
different threads really run in parallel.

Unknown users (V0008, V0009): the session looks the user up and passes `None` as the
stored hash when there is none. We then verify against a dummy hash with the same
parameters (one that no password matches) and return False, so an unknown user costs
the same time as a wrong password and PASS timing does not reveal which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from typing import Final

import argon2
import argon2.low_level
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ARGON2ID",
    "DEFAULT_PARAMS",
    "Argon2Params",
    "hash_password",
    "needs_rehash",
    "verifiers_for",
    "verify_password",
]

# Key of the argon2id PHC string in the verifier map a user record stores.
ARGON2ID: Final = "argon2id"


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


DEFAULT_PARAMS: Final = Argon2Params()


def hash_password(password: str, params: Argon2Params = DEFAULT_PARAMS) -> str:
    """Return an argon2id PHC string for `password` with a fresh random salt.

    Blocking (tens of milliseconds): fine for `popbox user add`, not on the event loop.
    """
    return _hasher(params).hash(password)


async def verify_password(
    phc: str | None, password: str, params: Argon2Params = DEFAULT_PARAMS
) -> bool:
    """Return True when `password` matches the stored hash `phc`.

    `phc is None` means the user does not exist: the result is always False, after
    the same work as a real check (V0009). A stored hash that cannot be parsed counts
    as a mismatch too, after the same work, rather than an error a client could tell
    apart. `params` only matter for the unknown-user case: a stored hash is checked
    with the cost parameters written in it.
    """
    return await asyncio.to_thread(_verify_blocking, phc, password, params)


def needs_rehash(phc: str, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """Tell whether `phc` was made with other parameters (or another algorithm).

    Call it after a successful `verify_password`; if True, store
    `hash_password(password)` in its place while the plaintext is at hand.
    """
    try:
        return _hasher(params).check_needs_rehash(phc)
    except InvalidHashError:
        return True


def verifiers_for(password: str, params: Argon2Params = DEFAULT_PARAMS) -> dict[str, str]:
    """Return every stored verifier derived from `password`, keyed by scheme.

    `popbox user add` and `user passwd` store this map, so each SASL mechanism finds
    the verifier it needs without the plaintext ever being stored.
    """
    return {ARGON2ID: hash_password(password, params)}


def _verify_blocking(phc: str | None, password: str, params: Argon2Params) -> bool:
    hasher = _hasher(params)
    if phc is not None:
        try:
            return hasher.verify(phc, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            # Corrupt or foreign stored hash: fall through to the dummy so this user
            # is indistinguishable, by answer and by timing, from an unknown one.
            pass
    with contextlib.suppress(VerifyMismatchError):
        hasher.verify(_dummy_hash(params), password)
    return False


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
