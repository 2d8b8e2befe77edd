"""Cheap stored hashes are checked without a thread hop, with the same answers."""

from __future__ import annotations

import argon2

from popbox.auth import passwords
from popbox.auth.passwords import INLINE_COST, Argon2Params, PasswordVerifier
from popbox.directory import schemes

CHEAP = Argon2Params(time_cost=1, memory_cost_kib=64)


def _cheap_hash(password: str) -> str:
    return argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(password)


async def test_cheap_hash_is_verified_inline_with_the_right_answer(monkeypatch):
    """A stored hash costing at most INLINE_COST is checked on the caller's thread."""
    assert INLINE_COST >= 64 * 1
    phc = _cheap_hash("right horse")

    async def no_thread(*_args, **_kwargs):
        raise AssertionError("a cheap hash must not be sent to a thread")

    monkeypatch.setattr(passwords.asyncio, "to_thread", no_thread)
    verifier = PasswordVerifier(CHEAP)  # the hash's own parameters: no padding either
    assert await verifier.verify(phc, "right horse") is True
    assert await verifier.verify(phc, "wrong horse") is False


async def test_unreadable_cheap_looking_hash_still_costs_a_dummy_check():
    """V0009: a corrupt stored hash is refused after the same work as an unknown user."""
    corrupt = _cheap_hash("x")[:-10] + "!!!!!!!!!!"
    verifier = PasswordVerifier(CHEAP)
    assert await verifier.verify(corrupt, "x") is False
    assert await verifier.verify(None, "x") is False


async def test_default_cost_hash_goes_to_a_thread(monkeypatch):
    """The production cost (19 MiB x 2) is far above INLINE_COST: never on the loop."""
    phc = passwords.hash_password("pw")
    sent = []
    real = passwords.asyncio.to_thread

    async def spy(func, *args):
        sent.append(func)
        return await real(func, *args)

    monkeypatch.setattr(passwords.asyncio, "to_thread", spy)
    assert await PasswordVerifier().verify(phc, "pw") is True
    assert sent


def test_a_passwd_files_argon2_hashes_follow_the_same_rule():
    """{ARGON2ID}/{ARGON2I} of a passwd-file: cheap ones inline, production cost on a thread."""
    cheap = schemes.StoredHash("ARGON2ID", "", _cheap_hash("pw"))
    cheap_i = schemes.StoredHash(
        "ARGON2I", "", argon2.PasswordHasher(1, 64, 1, type=argon2.Type.I).hash("pw")
    )
    costly = schemes.StoredHash("ARGON2ID", "", passwords.hash_password("pw"))
    unreadable = schemes.StoredHash("ARGON2ID", "", "$argon2id$v=19$m=lots")
    assert [schemes.costly(h) for h in (cheap, cheap_i, costly, unreadable)] == [
        False,
        False,
        True,
        True,
    ]
    assert schemes.verify(cheap_i, "pw")
    assert not schemes.verify(cheap_i, "pw2")
