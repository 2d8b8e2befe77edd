"""NTLM response verification and key derivation ([MS-NLMP] sections 3.3 and 3.4.5).

Every function here takes the user's NT hash (MD4 of the UTF-16LE password, NTOWFv1),
never the password: that hash is the verifier popbox stores for NTLM.  Comparisons of
client-supplied proofs use ``hmac.compare_digest``.  MD4, DES and RC4 come from
pycryptodome because this machine's OpenSSL (and so ``hashlib``) no longer offers MD4.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from Crypto.Cipher import ARC4, DES
from Crypto.Hash import MD4

__all__ = [
    "NTLMV2_BLOB_HEADER",
    "compute_mic",
    "desl",
    "exported_session_key",
    "ntowf_v2",
    "verify_v1",
    "verify_v2",
]

# NTLMv2_CLIENT_CHALLENGE before its AV pairs (2.2.2.7): RespType, HiRespType, 6 reserved
# octets, TimeStamp, ChallengeFromClient, 4 reserved octets.
NTLMV2_BLOB_HEADER: Final = 28
NTLMV1_RESPONSE_SIZE: Final = 24


@dataclass(frozen=True, slots=True)
class Verified:
    """The client proved knowledge of the NT hash; ``key_exchange_key`` per 3.4.5.1."""

    key_exchange_key: bytes


def _hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "md5")


def ntowf_v2(nt_hash: bytes, user: str, domain: str) -> bytes:
    """NTOWFv2 (3.3.2): HMAC_MD5(NTOWFv1, UNICODE(Uppercase(User) + UserDom))."""
    return _hmac_md5(nt_hash, (user.upper() + domain).encode("utf-16-le", "surrogatepass"))


def verify_v2(
    nt_hash: bytes, user: str, domain: str, server_challenge: bytes, nt_response: bytes
) -> Verified | None:
    """Check an NTLMv2 NtChallengeResponse (2.2.2.8): NTProofStr followed by the blob.

    NTProofStr = HMAC_MD5(ResponseKeyNT, ServerChallenge + blob); the SessionBaseKey is
    HMAC_MD5(ResponseKeyNT, NTProofStr), which NTLMv2 uses as the KeyExchangeKey.
    """
    if len(nt_response) < 16 + NTLMV2_BLOB_HEADER:
        return None
    proof, blob = nt_response[:16], nt_response[16:]
    response_key = ntowf_v2(nt_hash, user, domain)
    expected = _hmac_md5(response_key, server_challenge + blob)
    if not hmac.compare_digest(expected, proof):
        return None
    return Verified(_hmac_md5(response_key, proof))


def _des_key(seven: bytes) -> bytes:
    """Spread 56 key bits over 8 octets, 7 bits each (the low bit is DES parity)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def desl(key: bytes, data: bytes) -> bytes:
    """DESL (section 6): DES-encrypt ``data`` with the three 7-octet thirds of key + Z(5)."""
    padded = key.ljust(21, b"\x00")
    thirds = (_des_key(padded[i : i + 7]) for i in (0, 7, 14))
    # DES is what NTLMv1 is made of; it is only reached with auth.ntlm_allow_v1 on.
    return b"".join(DES.new(k, DES.MODE_ECB).encrypt(data) for k in thirds)  # noqa: S304


def verify_v1(
    nt_hash: bytes,
    server_challenge: bytes,
    lm_response: bytes,
    nt_response: bytes,
    *,
    extended_session_security: bool,
) -> Verified | None:
    """Check an NTLMv1 NtChallengeResponse (3.3.1), with or without extended security.

    With NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY the LmChallengeResponse carries the
    client challenge and the response is DESL over MD5(ServerChallenge + ClientChallenge).
    The LM response itself is never checked: that would need the LM hash, which popbox
    does not keep.
    """
    if len(nt_response) != NTLMV1_RESPONSE_SIZE:
        return None
    challenge = server_challenge
    if extended_session_security:
        if len(lm_response) < 8:
            return None
        challenge = hashlib.md5(server_challenge + lm_response[:8]).digest()[:8]  # noqa: S324 - the protocol's hash
    expected = desl(nt_hash, challenge)
    if not hmac.compare_digest(expected, nt_response):
        return None
    session_base_key = MD4.new(nt_hash).digest()  # noqa: S303 - 3.3.1 defines it so
    if extended_session_security:  # KXKEY (3.4.5.1)
        return Verified(_hmac_md5(session_base_key, server_challenge + lm_response[:8]))
    return Verified(session_base_key)


def exported_session_key(key_exchange_key: bytes, encrypted: bytes, *, key_exch: bool) -> bytes:
    """The session key both sides end with (3.2.5.1.2): RC4-decrypted when KEY_EXCH."""
    if key_exch and len(encrypted) == 16:
        return ARC4.new(key_exchange_key).decrypt(encrypted)
    return key_exchange_key


def compute_mic(
    session_key: bytes, negotiate: bytes, challenge: bytes, authenticate: bytes, mic_at: int
) -> bytes:
    """MIC (3.1.5.1.2): HMAC_MD5 over the three messages, the MIC field itself zeroed."""
    zeroed = authenticate[:mic_at] + bytes(16) + authenticate[mic_at + 16 :]
    return _hmac_md5(session_key, negotiate + challenge + zeroed)
