"""A minimal NTLM client for tests: builds the messages a client would, and lets tests break them.

Real clients (curl, fetchmail, mpop, pyspnego) prove interoperability; this one makes the
cases they never produce: NTLMv1 on demand, a MIC announced but missing, odd lengths.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from Crypto.Hash import MD4

from popbox.auth.ntlm_crypto import desl, ntowf_v2
from popbox.auth.ntlm_messages import SIGNATURE, AvId, Flag

CURL_FLAGS = Flag.OEM | Flag.REQUEST_TARGET | Flag.NTLM | Flag.ALWAYS_SIGN
CURL_FLAGS |= Flag.EXTENDED_SESSIONSECURITY  # what curl 7.88 sends: 0x00088206
UNICODE_FLAGS = Flag.UNICODE | Flag.REQUEST_TARGET | Flag.NTLM | Flag.KEY_EXCH
CLIENT_CHALLENGE = bytes(range(8))


def nt_hash(password: str) -> bytes:
    return MD4.new(password.encode("utf-16-le")).digest()  # noqa: S303 - NTOWFv1


def negotiate(flags: Flag = UNICODE_FLAGS) -> bytes:
    """A NEGOTIATE_MESSAGE with empty domain and workstation fields."""
    return SIGNATURE + struct.pack("<II", 1, flags) + bytes(16)


@dataclass(frozen=True)
class ParsedChallenge:
    flags: Flag
    server_challenge: bytes
    target_name: bytes
    target_info: bytes


def parse_challenge(data: bytes) -> ParsedChallenge:
    assert data[:8] == SIGNATURE
    assert struct.unpack_from("<I", data, 8)[0] == 2
    name_len, _, name_at = struct.unpack_from("<HHI", data, 12)
    (flags,) = struct.unpack_from("<I", data, 20)
    info_len, _, info_at = struct.unpack_from("<HHI", data, 40)
    return ParsedChallenge(
        Flag(flags),
        data[24:32],
        data[name_at : name_at + name_len],
        data[info_at : info_at + info_len],
    )


def av_pairs(pairs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HH", av_id, len(value)) + value for av_id, value in pairs)
    return body + struct.pack("<HH", AvId.EOL, 0)


def ntlmv2_response(
    password: str, user: str, domain: str, server_challenge: bytes, target_info: bytes
) -> bytes:
    """NTProofStr + NTLMv2_CLIENT_CHALLENGE ([MS-NLMP] 3.3.2) over ``target_info``."""
    blob = b"\x01\x01" + bytes(6) + bytes(8) + CLIENT_CHALLENGE + bytes(4) + target_info + bytes(4)
    key = ntowf_v2(nt_hash(password), user, domain)
    return hmac.digest(key, server_challenge + blob, "md5") + blob


def ntlmv1_response(password: str, server_challenge: bytes) -> bytes:
    return desl(nt_hash(password), server_challenge)


def authenticate(  # noqa: PLR0913 - one argument per message field
    nt_response: bytes,
    *,
    user: str = "alice",
    domain: str = "",
    flags: Flag = UNICODE_FLAGS,
    lm_response: bytes = bytes(24),
    session_key: bytes = b"",
    mic: bytes | None = None,
    short_header: bool = False,
) -> bytes:
    """An AUTHENTICATE_MESSAGE; with ``mic`` the header has Version and MIC (88 octets).

    ``short_header``: the oldest layout, payload right after the five fields (52 octets),
    with no session key and no NegotiateFlags.
    """
    encoding = "utf-16-le" if flags & Flag.UNICODE else "latin-1"
    fields = [
        lm_response,
        nt_response,
        domain.encode(encoding),
        user.encode(encoding),
        "WORKSTATION".encode(encoding),
        session_key,
    ]
    if short_header:
        fields.pop()
    offset = 52 if short_header else 88 if mic is not None else 64
    header = SIGNATURE + struct.pack("<I", 3)
    payload = b""
    for value in fields:
        header += struct.pack("<HHI", len(value), len(value), offset + len(payload))
        payload += value
    if short_header:
        return header + payload
    header += struct.pack("<I", flags)
    if mic is not None:
        header += bytes(8) + mic
    return header + payload
