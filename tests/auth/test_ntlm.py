"""The NTLM mechanism object ([MS-NLMP] server side, [MS-OXPOP3] exchange) without a server."""

from __future__ import annotations

import hashlib
import struct

import pytest
import spnego
from hypothesis import given, settings
from hypothesis import strategies as st

from ntlm_client import (
    CURL_FLAGS,
    UNICODE_FLAGS,
    authenticate,
    av_pairs,
    negotiate,
    nt_hash,
    ntlmv1_response,
    ntlmv2_response,
    parse_challenge,
)
from popbox.auth import ntlm
from popbox.auth.base import AuthContext, Challenge, Failure, Success
from popbox.auth.ntlm import NtlmMechanism, NtlmSettings, target_names
from popbox.auth.ntlm_crypto import desl
from popbox.auth.ntlm_messages import AV_FLAG_MIC_PRESENT, AvId, Flag, parse_av_pairs
from popbox.auth.passwords import NT, Argon2Params, verifiers_for
from popbox.auth.passwords import nt_hash as passwords_nt_hash
from popbox.config import AuthConfig
from popbox.store.memory import MemoryStore

PASSWORD = "alice secret"
NAMES = target_names("EXAMPLE", "mail.example.com")


async def store_with_users() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    await store.add_user("alice", {"nt": nt_hash(PASSWORD).hex()})
    await store.add_user("nonthash", {"argon2id": "$argon2id$..."})
    return store


async def mechanism(*, allow_v1: bool = False) -> NtlmMechanism:
    context = AuthContext(await store_with_users(), "127.0.0.1:4000", tls_active=False)
    return NtlmMechanism(context, NtlmSettings(NAMES, allow_v1=allow_v1))


async def challenge_for(mech: NtlmMechanism, flags: Flag = UNICODE_FLAGS) -> bytes:
    step = await mech.start(negotiate(flags))
    assert isinstance(step, Challenge)
    return step.data


@pytest.mark.parametrize("initial", [None, b""])
async def test_auth_ntlm_is_answered_with_an_empty_challenge_ms_oxpop3_2_2_1(initial):
    """[MS-OXPOP3] 2.2.1: the server answers "AUTH NTLM" with "+ " (an empty challenge)."""
    mech = await mechanism()
    assert await mech.start(initial) == Challenge(b"")
    step = await mech.step(negotiate())
    assert isinstance(step, Challenge)
    assert parse_challenge(step.data).server_challenge != bytes(8)


async def test_challenge_is_oem_when_the_negotiate_has_no_unicode_flag_ms_nlmp_2_2_2_5():
    """[MS-NLMP] 2.2.2.5: OEM text when the client did not ask for Unicode (curl)."""
    challenge = parse_challenge(await challenge_for(await mechanism(), CURL_FLAGS))
    assert challenge.flags & Flag.OEM
    assert not challenge.flags & Flag.UNICODE
    assert challenge.target_name == b"EXAMPLE"
    assert challenge.flags & Flag.EXTENDED_SESSIONSECURITY  # asked for, granted
    assert not challenge.flags & Flag.KEY_EXCH  # not asked for


async def test_challenge_is_unicode_and_names_the_server_in_av_pairs_ms_nlmp_2_2_1_2():
    challenge = parse_challenge(await challenge_for(await mechanism(), UNICODE_FLAGS))
    assert challenge.flags & Flag.UNICODE
    assert not challenge.flags & Flag.OEM
    assert challenge.flags & Flag.TARGET_INFO
    assert challenge.target_name == "EXAMPLE".encode("utf-16-le")
    pairs = parse_av_pairs(challenge.target_info)
    assert pairs[AvId.NB_DOMAIN_NAME] == "EXAMPLE".encode("utf-16-le")
    assert pairs[AvId.NB_COMPUTER_NAME] == "MAIL".encode("utf-16-le")
    assert pairs[AvId.DNS_DOMAIN_NAME] == "example.com".encode("utf-16-le")
    assert pairs[AvId.DNS_COMPUTER_NAME] == "mail.example.com".encode("utf-16-le")
    assert len(pairs[AvId.TIMESTAMP]) == 8


async def test_pyspnego_ntlmv2_with_mic_logs_in_and_both_sides_share_the_session_key():
    """An independent client: NTLMv2, MsvAvFlags announcing a MIC, KEY_EXCH."""
    mech = await mechanism()
    client = spnego.client("alice", PASSWORD, hostname="mail", service="pop", protocol="ntlm")
    challenge = await mech.start(client.step())
    assert isinstance(challenge, Challenge)
    message = client.step(challenge.data)
    assert await mech.step(message) == Success("alice")
    assert mech.session_key == client.session_key


async def test_tampered_mic_is_refused_ms_nlmp_3_2_5_1_2():
    mech = await mechanism()
    client = spnego.client("alice", PASSWORD, hostname="mail", service="pop", protocol="ntlm")
    challenge = await mech.start(client.step())
    assert isinstance(challenge, Challenge)
    message = bytearray(client.step(challenge.data))
    message[72] ^= 0x01  # first MIC octet
    step = await mech.step(bytes(message))
    assert isinstance(step, Failure)
    assert mech.session_key is None


async def test_mic_announced_in_msvavflags_but_absent_is_refused_ms_nlmp_3_2_5_1_2():
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech))
    flags_pair = (AvId.FLAGS, struct.pack("<I", AV_FLAG_MIC_PRESENT))
    info = av_pairs([*parse_av_pairs(challenge.target_info).items(), flags_pair])
    response = ntlmv2_response(PASSWORD, "alice", "", challenge.server_challenge, info)
    step = await mech.step(authenticate(response))  # 64-octet header: no room for a MIC
    assert isinstance(step, Failure)


async def test_own_ntlmv2_without_mic_logs_in_oem():
    """The shape curl sends: OEM strings, NTLMv2, no MsvAvFlags, no MIC."""
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech, CURL_FLAGS))
    response = ntlmv2_response(
        PASSWORD, "alice", "", challenge.server_challenge, challenge.target_info
    )
    assert await mech.step(authenticate(response, flags=CURL_FLAGS)) == Success("alice")


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("nobody", PASSWORD), ("nonthash", PASSWORD)],
    ids=["wrong-password", "unknown-user", "no-nt-hash"],
)
async def test_wrong_password_unknown_user_and_missing_nt_hash_fail_alike(user, password):
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv2_response(password, user, "", challenge.server_challenge, b"\0\0\0\0")
    step = await mech.step(authenticate(response, user=user))
    assert step == Failure("wrong password, unknown user or no NT hash stored", user)


async def test_ntlmv1_is_refused_by_default():
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv1_response(PASSWORD, challenge.server_challenge)
    step = await mech.step(authenticate(response))
    assert isinstance(step, Failure)
    assert "NTLMv1" in step.reason


async def test_ntlmv1_is_accepted_with_ntlm_allow_v1():
    mech = await mechanism(allow_v1=True)
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv1_response(PASSWORD, challenge.server_challenge)
    assert await mech.step(authenticate(response)) == Success("alice")


async def test_ntlmv1_wrong_password_fails_even_when_allowed():
    mech = await mechanism(allow_v1=True)
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv1_response("wrong", challenge.server_challenge)
    assert isinstance(await mech.step(authenticate(response)), Failure)


async def test_anonymous_authenticate_is_refused():
    mech = await mechanism()
    await challenge_for(mech)
    step = await mech.step(authenticate(b"", user="", lm_response=b"\0"))
    assert isinstance(step, Failure)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"NTLMSSP\0",
        b"NTLMSSP\0\x01\0\0",
        b"NTLMSSX\0\x01\0\0\0\0\0\0\0",
        b"NTLMSSP\0\x03\0\0\0" + bytes(8),
        b"garbage that is long enough to look like a message",
    ],
    ids=["empty", "signature-only", "truncated-type", "bad-signature", "wrong-type", "garbage"],
)
async def test_malformed_negotiate_fails_without_crashing(data):
    mech = await mechanism()
    assert await mech.start(None) == Challenge(b"")
    step = await mech.step(data)
    assert isinstance(step, Failure)
    assert isinstance(await mech.step(negotiate()), Failure)  # the exchange is over


def truncated_authenticate() -> bytes:
    return authenticate(b"x" * 60)[:40]


def out_of_range_authenticate() -> bytes:
    message = bytearray(authenticate(b"x" * 60))
    struct.pack_into("<HHI", message, 20, 60, 60, 10_000)  # NT response beyond the end
    return bytes(message)


def odd_unicode_authenticate() -> bytes:
    message = bytearray(authenticate(b"x" * 60))
    length, _, at = struct.unpack_from("<HHI", message, 36)
    struct.pack_into("<HHI", message, 36, length - 1, length - 1, at)  # user: odd length
    return bytes(message)


def bad_av_pairs_authenticate() -> bytes:
    response = b"p" * 16 + b"\x01\x01" + bytes(26) + b"\x02\x00\xff\x00"  # pair past the end
    return authenticate(response)


@pytest.mark.parametrize(
    "make",
    [truncated_authenticate, out_of_range_authenticate, odd_unicode_authenticate],
)
async def test_malformed_authenticate_fails_without_crashing(make):
    mech = await mechanism()
    await challenge_for(mech)
    step = await mech.step(make())
    assert isinstance(step, Failure)
    assert step.reason.startswith("malformed NTLM")


async def test_malformed_av_pairs_in_the_ntlmv2_blob_fail_without_crashing():
    mech = await mechanism()
    await challenge_for(mech)
    assert isinstance(await mech.step(bad_av_pairs_authenticate()), Failure)


async def test_a_finished_exchange_takes_no_more_steps():
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv2_response(PASSWORD, "alice", "", challenge.server_challenge, b"\0\0\0\0")
    assert await mech.step(authenticate(response)) == Success("alice")
    assert isinstance(await mech.step(authenticate(response)), Failure)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), prefix=st.booleans())
async def test_arbitrary_authenticate_bytes_only_ever_fail(data, prefix):
    """Whatever arrives as AUTHENTICATE, the answer is a Failure, never an exception."""
    mech = await mechanism(allow_v1=True)
    await challenge_for(mech)
    message = (b"NTLMSSP\0\x03\0\0\0" + data) if prefix else data
    assert isinstance(await mech.step(message), Failure)


def test_nt_hash_is_stored_only_while_ntlm_is_offered():
    """The NT hash is password-equivalent for NTLM: made only when NTLM is offered."""
    cheap = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024)
    with_ntlm = verifiers_for(PASSWORD, cheap, auth=AuthConfig(mechanisms=("NTLM",)))
    assert with_ntlm[NT] == nt_hash(PASSWORD).hex() == passwords_nt_hash(PASSWORD)
    without = verifiers_for(PASSWORD, cheap, auth=AuthConfig(mechanisms=("PLAIN",)))
    assert NT not in without


@pytest.mark.parametrize("stored", ["not hex at all", "abcd"], ids=["not-hex", "too-short"])
async def test_a_corrupt_stored_nt_hash_fails_like_a_wrong_password(stored):
    store = await store_with_users()
    await store.add_user("corrupt", {NT: stored})
    mech = NtlmMechanism(
        AuthContext(store, "127.0.0.1:4000", tls_active=False), NtlmSettings(NAMES)
    )
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv2_response(PASSWORD, "corrupt", "", challenge.server_challenge, b"\0\0\0\0")
    step = await mech.step(authenticate(response, user="corrupt"))
    assert step == Failure("wrong password, unknown user or no NT hash stored", "corrupt")


async def test_an_nt_response_too_short_for_ntlmv2_fails():
    mech = await mechanism()
    await challenge_for(mech)
    assert isinstance(await mech.step(authenticate(b"x" * 30)), Failure)


@pytest.mark.parametrize(
    ("password", "lm_response", "ok"),
    [
        (PASSWORD, bytes(range(8)) + bytes(16), True),
        ("wrong", bytes(range(8)) + bytes(16), False),
        (PASSWORD, b"", False),
    ],
    ids=["right", "wrong-password", "no-client-challenge"],
)
async def test_ntlmv1_with_extended_session_security_ms_nlmp_3_3_1(password, lm_response, ok):
    """With ESS the response covers MD5(ServerChallenge + ClientChallenge) (3.3.1)."""
    mech = await mechanism(allow_v1=True)
    flags = UNICODE_FLAGS | Flag.EXTENDED_SESSIONSECURITY
    challenge = parse_challenge(await challenge_for(mech, flags))
    digest = hashlib.md5(challenge.server_challenge + lm_response[:8]).digest()  # noqa: S324
    response = desl(nt_hash(password), digest[:8])
    step = await mech.step(authenticate(response, flags=flags, lm_response=lm_response))
    assert (step == Success("alice")) is ok


async def test_unknown_users_cost_the_same_verification_work(monkeypatch):
    """V0009 spirit for NTLM: an unknown user runs the same HMAC checks as a wrong password."""
    calls: list[str] = []
    real = ntlm.verify_v2

    def counting(nt_hash_, user, domain, *args):
        calls.append(user)
        return real(nt_hash_, user, domain, *args)

    monkeypatch.setattr(ntlm, "verify_v2", counting)
    for user in ("alice", "nobody"):
        mech = await mechanism()
        challenge = parse_challenge(await challenge_for(mech))
        response = ntlmv2_response("wrong", user, "Dom", challenge.server_challenge, b"\0" * 4)
        assert isinstance(await mech.step(authenticate(response, user=user, domain="Dom")), Failure)
    assert calls.count("alice") == calls.count("nobody") == 3  # "Dom", "DOM", ""


async def test_the_oldest_authenticate_layout_without_flags_is_read_ms_nlmp_2_2_1_3():
    """A 52-octet header (no session key, no flags): the negotiated flags apply."""
    mech = await mechanism()
    challenge = parse_challenge(await challenge_for(mech))
    response = ntlmv2_response(PASSWORD, "alice", "", challenge.server_challenge, b"\0\0\0\0")
    assert await mech.step(authenticate(response, short_header=True)) == Success("alice")
