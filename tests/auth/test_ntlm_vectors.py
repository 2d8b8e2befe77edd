"""[MS-NLMP] section 4.2 test vectors through popbox's NTLM code, byte for byte.

The common inputs of 4.2.1: user "User", domain "Domain", password "Password",
server name "Server", ServerChallenge 0123456789abcdef, ClientChallenge aa*8,
Time 0, RandomSessionKey 55*16.  Every expected value below is the one the
specification prints.
"""

from __future__ import annotations

import struct

from Crypto.Cipher import ARC4
from Crypto.Hash import MD4

from popbox.auth.base import AuthContext, Challenge, Success
from popbox.auth.ntlm import NtlmMechanism, NtlmSettings, target_names
from popbox.auth.ntlm_crypto import (
    desl,
    exported_session_key,
    ntowf_v2,
    verify_v1,
    verify_v2,
)
from popbox.auth.ntlm_messages import SIGNATURE, Flag
from popbox.store.memory import MemoryStore

PASSWORD = "Password"
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = b"\xaa" * 8
RANDOM_SESSION_KEY = b"\x55" * 16
NT_HASH = MD4.new(PASSWORD.encode("utf-16-le")).digest()  # noqa: S303 - NTOWFv1


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def ntlmv2_temp() -> bytes:
    """The NTLMv2_CLIENT_CHALLENGE of 4.2.4: Time 0, ClientChallenge, the two AV pairs."""
    av_pairs = (
        struct.pack("<HH", 2, 12)
        + "Domain".encode("utf-16-le")
        + struct.pack("<HH", 1, 12)
        + "Server".encode("utf-16-le")
        + bytes(4)
    )
    return b"\x01\x01" + bytes(6) + bytes(8) + CLIENT_CHALLENGE + bytes(4) + av_pairs + bytes(4)


def test_nt_hash_is_ntowfv1_ms_nlmp_4_2_2_1_2():
    """NTOWFv1(): a4 f4 9c 40 65 10 bd ca b6 82 4e e7 c3 0f d8 52."""
    assert unhex("a4f49c406510bdcab6824ee7c30fd852") == NT_HASH


def test_ntowfv2_ms_nlmp_4_2_4_1_1():
    """NTOWFv2(): 0c 86 8a 40 3b fd 7a 93 a3 00 1e f2 2e f0 2e 3f."""
    assert ntowf_v2(NT_HASH, "User", "Domain") == unhex("0c868a403bfd7a93a3001ef22ef02e3f")


def test_ntlmv2_response_and_session_base_key_ms_nlmp_4_2_4():
    """NTProofStr 68cd0ab8...6a1c (4.2.4.2.2); SessionBaseKey 8de40cca...5ca3 (4.2.4.1.2)."""
    proof = unhex("68cd0ab851e51c96aabc927bebef6a1c")
    verified = verify_v2(NT_HASH, "User", "Domain", SERVER_CHALLENGE, proof + ntlmv2_temp())
    assert verified is not None
    assert verified.key_exchange_key == unhex("8de40ccadbc14a82f15cb0ad0de95ca3")


def test_ntlmv2_wrong_proof_is_refused_ms_nlmp_3_3_2():
    proof = unhex("68cd0ab851e51c96aabc927bebef6a1d")
    assert verify_v2(NT_HASH, "User", "Domain", SERVER_CHALLENGE, proof + ntlmv2_temp()) is None


def test_ntlmv2_encrypted_session_key_ms_nlmp_4_2_4_2_3():
    """EncryptedRandomSessionKey: c5 da d2 54 4f c9 79 90 94 ce 1c e9 0b c9 d0 3e."""
    kxkey = unhex("8de40ccadbc14a82f15cb0ad0de95ca3")
    encrypted = unhex("c5dad2544fc9799094ce1ce90bc9d03e")
    assert ARC4.new(kxkey).encrypt(RANDOM_SESSION_KEY) == encrypted
    assert exported_session_key(kxkey, encrypted, key_exch=True) == RANDOM_SESSION_KEY
    assert exported_session_key(kxkey, encrypted, key_exch=False) == kxkey


def test_ntlmv1_response_ms_nlmp_4_2_2_2_1():
    """NTLMv1 NTChallengeResponse: 67 c4 30 11 f3 02 98 a2 ... 27 84 1f 94."""
    expected = unhex("67c43011f30298a2ad35ece64f16331c44bdbed927841f94")
    assert desl(NT_HASH, SERVER_CHALLENGE) == expected
    verified = verify_v1(
        NT_HASH, SERVER_CHALLENGE, bytes(24), expected, extended_session_security=False
    )
    assert verified is not None
    assert (
        verify_v1(
            NT_HASH, SERVER_CHALLENGE, bytes(24), expected[:23], extended_session_security=False
        )
        is None
    )
    # 4.2.2.1.3 SessionBaseKey = MD4(NTOWFv1): d8 72 62 b0 cd e4 b1 cb ...
    assert verified.key_exchange_key == unhex("d87262b0cde4b1cb7499becccdf10784")


def test_ntlmv1_with_extended_session_security_ms_nlmp_4_2_3():
    """4.2.3.2.2 response 75 37 f8 03 ... 72 32; 4.2.3.1.2 KeyExchangeKey eb 93 42 9a ..."""
    lm_response = CLIENT_CHALLENGE + bytes(16)  # 4.2.3.2.1
    nt_response = unhex("7537f803ae367128ca458204bde7caf81e97ed2683267232")
    verified = verify_v1(
        NT_HASH, SERVER_CHALLENGE, lm_response, nt_response, extended_session_security=True
    )
    assert verified is not None
    assert verified.key_exchange_key == unhex("eb93429a8bd952f8b89c55b87f475edc")


def authenticate_message(user: str, domain: str, nt_response: bytes, session_key: bytes) -> bytes:
    """A Unicode AUTHENTICATE_MESSAGE (2.2.1.3) carrying the 4.2.4 responses, no MIC."""
    flags = Flag.UNICODE | Flag.NTLM | Flag.KEY_EXCH | Flag.EXTENDED_SESSIONSECURITY
    lm_response = bytes(24)
    fields = [
        lm_response,
        nt_response,
        domain.encode("utf-16-le"),
        user.encode("utf-16-le"),
        "COMPUTER".encode("utf-16-le"),
        session_key,
    ]
    offset = 64
    header = SIGNATURE + struct.pack("<I", 3)
    payload = b""
    for value in fields:
        header += struct.pack("<HHI", len(value), len(value), offset + len(payload))
        payload += value
    return header + struct.pack("<I", flags) + payload


async def test_mechanism_accepts_the_4_2_4_exchange_and_exports_the_session_key():
    """The whole server side on the 4.2.4 values: NEGOTIATE, CHALLENGE, AUTHENTICATE.

    With KEY_EXCH the exported session key is RC4(KeyExchangeKey, encrypted key), the
    RandomSessionKey 55*16 the client chose (3.2.5.1.2).
    """
    store = MemoryStore()
    await store.open()
    await store.add_user("User", {"nt": NT_HASH.hex()})
    mechanism = NtlmMechanism(
        AuthContext(store, "127.0.0.1:1", tls_active=False),
        NtlmSettings(target_names("Domain", "server.example")),
        nonce=lambda size: SERVER_CHALLENGE[:size],
    )
    asked = Flag.UNICODE | Flag.NTLM | Flag.KEY_EXCH | Flag.EXTENDED_SESSIONSECURITY
    negotiate = SIGNATURE + struct.pack("<II", 1, asked) + bytes(16)
    challenge = await mechanism.start(negotiate)
    assert isinstance(challenge, Challenge)
    assert challenge.data[24:32] == SERVER_CHALLENGE
    nt_response = unhex("68cd0ab851e51c96aabc927bebef6a1c") + ntlmv2_temp()
    message = authenticate_message(
        "User", "Domain", nt_response, unhex("c5dad2544fc9799094ce1ce90bc9d03e")
    )
    assert await mechanism.step(message) == Success("User")
    assert mechanism.session_key == RANDOM_SESSION_KEY
