"""argon2id hashing and verification in popbox.auth.passwords."""

from __future__ import annotations

import threading
import time

import argon2
import pytest

from popbox.auth import passwords
from popbox.auth.passwords import (
    ARGON2ID,
    DEFAULT_PARAMS,
    Argon2Params,
    PasswordVerifier,
    hash_password,
    needs_rehash,
    verifiers_for,
)

# Cheaper than the defaults so tests that hash with other parameters stay fast.
CHEAP = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024)


class VerifySpy:
    """Wraps argon2's verify to record which hashes were checked, and on which thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes: list[str] = []
        self.threads: list[int] = []
        real = argon2.PasswordHasher.verify

        def spy(hasher: argon2.PasswordHasher, phc: str, password: str) -> bool:
            self.hashes.append(phc)
            self.threads.append(threading.get_ident())
            return real(hasher, phc, password)

        monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> VerifySpy:
    return VerifySpy(monkeypatch)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse")


async def verify_password(
    phc: str | None, password: str, params: Argon2Params = DEFAULT_PARAMS
) -> bool:
    """One check by a verifier configured with ``params``."""
    return await PasswordVerifier(params).verify(phc, password)


def test_default_parameters_follow_owasp_argon2id_recommendation() -> None:
    params = DEFAULT_PARAMS

    assert (params.time_cost, params.memory_cost_kib, params.parallelism) == (2, 19 * 1024, 1)


def test_hash_is_argon2id_phc_string_with_default_parameters(stored) -> None:
    params = argon2.extract_parameters(stored)

    assert stored.startswith("$argon2id$v=19$")
    assert params.type is argon2.Type.ID
    assert params.time_cost == DEFAULT_PARAMS.time_cost
    assert params.memory_cost == DEFAULT_PARAMS.memory_cost_kib
    assert params.parallelism == DEFAULT_PARAMS.parallelism


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("pw", CHEAP) != hash_password("pw", CHEAP)


async def test_correct_password_verifies(stored) -> None:
    assert await verify_password(stored, "correct horse") is True


async def test_wrong_password_does_not_verify(stored) -> None:
    assert await verify_password(stored, "correct horse ") is False
    assert await verify_password(stored, "") is False


async def test_password_with_spaces_and_non_ascii_round_trips_v0011() -> None:
    """V0011: PASS takes the whole remainder of the line, spaces included, as the
    password."""
    password = "  two  spaces and ünïcode "
    phc = hash_password(password, CHEAP)

    assert await verify_password(phc, password, CHEAP) is True
    assert await verify_password(phc, password.strip(), CHEAP) is False


async def test_unknown_user_is_refused_after_a_full_verification_v0009(spy) -> None:
    """V0009: nothing tells an attacker which users exist (not the text, not the
    timing of PASS)."""
    assert await verify_password(None, "anything") is False

    # Same work as a real check: exactly one argon2id verification, with the same
    # cost parameters a stored default hash has.
    assert len(spy.hashes) == 1
    dummy = argon2.extract_parameters(spy.hashes[0])
    real = argon2.extract_parameters(hash_password("x"))
    assert dummy == real


async def test_unknown_user_is_refused_whatever_the_password(spy) -> None:
    for guess in ("", "password", "demo", "\x00"):
        assert await verify_password(None, guess) is False
    assert len(spy.hashes) == 4


async def test_unknown_user_dummy_uses_the_configured_parameters(spy) -> None:
    assert await verify_password(None, "pw", CHEAP) is False

    params = argon2.extract_parameters(spy.hashes[0])
    assert (params.time_cost, params.memory_cost) == (CHEAP.time_cost, CHEAP.memory_cost_kib)


@pytest.mark.parametrize("corrupt", ["", "garbage", "$2b$12$" + "a" * 53, "$argon2id$v=19$x"])
async def test_corrupt_stored_hash_is_a_mismatch_after_full_work(spy, corrupt) -> None:
    assert await verify_password(corrupt, "pw") is False

    assert spy.hashes[-1] == passwords._dummy_hash(DEFAULT_PARAMS)


async def test_verification_runs_off_the_event_loop_thread(spy, stored) -> None:
    await verify_password(stored, "correct horse")
    await verify_password(None, "correct horse")

    assert threading.get_ident() not in spy.threads


async def _timed(verifier: PasswordVerifier, phc: str | None, password: str) -> float:
    started = time.perf_counter()
    await verifier.verify(phc, password)
    return time.perf_counter() - started


async def test_cheaper_stored_hash_answers_no_sooner_than_the_configured_cost_v0009() -> None:
    """V0009: nothing tells an attacker which users exist (not the timing of PASS).  A
    stored hash far cheaper than the configured parameters (argon2id at 64 KiB, as an
    import may leave) is answered, right or wrong, no sooner than an unknown user."""
    verifier = PasswordVerifier()  # the production parameters, 19 MiB x 2
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash("pw")
    unknown = sorted([await _timed(verifier, None, "pw") for _ in range(5)])

    wrong = await _timed(verifier, cheap, "wrong")
    right = await _timed(verifier, cheap, "pw")

    # The padding waits for the median of the checks the verifier measured itself:
    # these same five, timed from a little further out.
    assert min(wrong, right) >= 0.9 * unknown[2], (wrong, right, unknown)


async def test_first_cheaper_check_does_the_configured_work_v0009(spy) -> None:
    """Before any check at the configured cost was measured, the padding is that check."""
    cheap = hash_password("pw", CHEAP)

    assert await PasswordVerifier().verify(cheap, "wrong") is False

    assert spy.hashes == [cheap, passwords._dummy_hash(DEFAULT_PARAMS)]


async def test_hash_at_the_configured_cost_is_not_padded(spy, stored) -> None:
    verifier = PasswordVerifier()

    assert await verifier.verify(stored, "correct horse") is True

    assert spy.hashes == [stored]


def test_fresh_hash_needs_no_rehash(stored) -> None:
    assert needs_rehash(stored) is False


def test_hash_with_older_parameters_needs_rehash() -> None:
    assert needs_rehash(hash_password("pw", CHEAP)) is True
    assert needs_rehash(hash_password("pw", CHEAP), CHEAP) is False


def test_unparseable_hash_needs_rehash() -> None:
    assert needs_rehash("garbage") is True


async def test_verifiers_for_gives_an_argon2id_verifier() -> None:
    verifiers = verifiers_for("s3cret", CHEAP)

    assert ARGON2ID in verifiers  # and one per further mechanism offered (test_scram.py)
    assert "s3cret" not in "".join(verifiers.values())
    assert await verify_password(verifiers[ARGON2ID], "s3cret", CHEAP) is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_cost": 0},
        {"parallelism": 0},
        {"memory_cost_kib": 7},
        {"hash_len": 8},
        {"salt_len": 8},
    ],
)
def test_invalid_parameters_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        Argon2Params(**kwargs)
