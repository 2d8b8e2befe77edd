"""NTLM message formats ([MS-NLMP] section 2.2): parse NEGOTIATE and AUTHENTICATE, build CHALLENGE.

Theory of operation: every message starts with the 8-octet signature ``NTLMSSP\\0`` and a
32-bit little-endian message type.  Variable-length fields are described in the fixed
header by 8-octet "fields" structures (length, maximum length, offset) that point into a
payload after the header.  A client's message is untrusted input: every length and offset
is checked against the message before it is used, and anything that does not fit raises
``MalformedMessage`` (the mechanism turns that into a failed login, never a crash).

Only the server side lives here: the server reads NEGOTIATE (type 1) and AUTHENTICATE
(type 3) and writes CHALLENGE (type 2).  The cryptography is in ``ntlm_crypto``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "SIGNATURE",
    "AuthenticateMessage",
    "AvId",
    "Flag",
    "MalformedMessage",
    "NegotiateMessage",
    "TargetNames",
    "build_challenge",
    "challenge_flags",
    "parse_authenticate",
    "parse_av_pairs",
    "parse_negotiate",
]

SIGNATURE: Final = b"NTLMSSP\x00"
NEGOTIATE: Final = 1
CHALLENGE: Final = 2
AUTHENTICATE: Final = 3

# [MS-NLMP] 2.2.2.10 VERSION: what this server reports when the client asks for it
# (Windows 10 / Server 2016 and later, NTLM revision 15).
SERVER_VERSION: Final = struct.pack("<BBH3xB", 10, 0, 20348, 0x0F)

CHALLENGE_HEADER_SIZE: Final = 56  # signature .. Version (2.2.1.2)
AUTHENTICATE_MIC_OFFSET: Final = 72  # after the Version field (2.2.1.3)
MIC_SIZE: Final = 16


class Flag(enum.IntFlag):
    """NEGOTIATE flags ([MS-NLMP] 2.2.2.5) that this server reads or answers."""

    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    SIGN = 0x00000010
    SEAL = 0x00000020
    LM_KEY = 0x00000080
    NTLM = 0x00000200
    ANONYMOUS = 0x00000800
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    EXTENDED_SESSIONSECURITY = 0x00080000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    NEGOTIATE_128 = 0x20000000
    KEY_EXCH = 0x40000000
    NEGOTIATE_56 = 0x80000000


class AvId(enum.IntEnum):
    """AV_PAIR identifiers ([MS-NLMP] 2.2.2.1)."""

    EOL = 0
    NB_COMPUTER_NAME = 1
    NB_DOMAIN_NAME = 2
    DNS_COMPUTER_NAME = 3
    DNS_DOMAIN_NAME = 4
    DNS_TREE_NAME = 5
    FLAGS = 6
    TIMESTAMP = 7
    SINGLE_HOST = 8
    TARGET_NAME = 9
    CHANNEL_BINDINGS = 10


# MsvAvFlags bit: the client put a MIC in the AUTHENTICATE message (2.2.2.1).
AV_FLAG_MIC_PRESENT: Final = 0x00000002

# Flags the server grants when the client asks for them.  SIGN, SEAL and the LM key
# flags are never granted: POP3 has no NTLM security layer ([MS-OXPOP3] uses NTLM for
# authentication only), and this server keeps no LM hash to derive LM keys from.
_GRANTED_IF_ASKED: Final = (
    Flag.ALWAYS_SIGN
    | Flag.EXTENDED_SESSIONSECURITY
    | Flag.VERSION
    | Flag.NEGOTIATE_128
    | Flag.NEGOTIATE_56
    | Flag.KEY_EXCH
    | Flag.REQUEST_TARGET
)


class MalformedMessage(ValueError):
    """The client's bytes are not the NTLM message expected here."""


@dataclass(frozen=True, slots=True)
class NegotiateMessage:
    flags: Flag
    raw: bytes  # the whole message, for the MIC


@dataclass(frozen=True, slots=True)
class TargetNames:
    """How the server names itself in CHALLENGE (TargetName and the AV pairs)."""

    netbios_domain: str
    netbios_computer: str
    dns_domain: str
    dns_computer: str


@dataclass(frozen=True, slots=True)
class AuthenticateMessage:
    lm_response: bytes
    nt_response: bytes
    domain: str
    user: str
    workstation: str
    encrypted_session_key: bytes
    flags: Flag
    mic: bytes | None  # None when the header is too short to hold one
    raw: bytes  # the whole message, for the MIC


def _header(data: bytes, expected_type: int, minimum: int) -> None:
    if len(data) < minimum:
        raise MalformedMessage(f"NTLM message of {len(data)} octets is too short")
    if data[:8] != SIGNATURE:
        raise MalformedMessage("not an NTLMSSP message")
    (message_type,) = struct.unpack_from("<I", data, 8)
    if message_type != expected_type:
        raise MalformedMessage(f"NTLM message type {message_type}, expected {expected_type}")


def _field(data: bytes, at: int) -> tuple[bytes, int]:
    """The bytes a fields structure at ``at`` points to, and its offset (2.2.1)."""
    length, _max_length, offset = struct.unpack_from("<HHI", data, at)
    if length == 0:
        return b"", 0
    if offset + length > len(data):
        raise MalformedMessage("NTLM field points outside the message")
    return data[offset : offset + length], offset


def parse_negotiate(data: bytes) -> NegotiateMessage:
    """Parse a NEGOTIATE_MESSAGE (2.2.1.1).  Its domain and workstation are not needed."""
    _header(data, NEGOTIATE, 16)
    (flags,) = struct.unpack_from("<I", data, 12)
    return NegotiateMessage(Flag(flags), data)


def challenge_flags(asked: Flag) -> Flag:
    """The flags CHALLENGE answers a NEGOTIATE with ([MS-NLMP] 3.2.5.1.1).

    Text is Unicode if the client can take it, otherwise OEM (curl's NEGOTIATE has no
    UNICODE flag); NTLM and TARGET_INFO are always set, because NTLMv2 needs the target
    info block, and the rest is granted only when asked for.
    """
    flags = Flag.NTLM | Flag.TARGET_INFO | Flag.TARGET_TYPE_SERVER
    flags |= Flag.UNICODE if asked & Flag.UNICODE else Flag.OEM
    return flags | (asked & _GRANTED_IF_ASKED)


def encode_text(text: str, flags: Flag) -> bytes:
    """A string field in the character set the flags negotiated (2.2: Unicode or OEM)."""
    if flags & Flag.UNICODE:
        return text.encode("utf-16-le")
    # OEM strings are the client's code page; ASCII is the part every code page shares.
    return text.encode("ascii", "replace")


def decode_text(raw: bytes, flags: Flag) -> str:
    if flags & Flag.UNICODE:
        if len(raw) % 2:
            raise MalformedMessage("a Unicode field has an odd length")
        return raw.decode("utf-16-le", "surrogatepass")
    # Latin-1 maps each OEM octet to the code point of the same value, which is what
    # clients that "convert" OEM names to Unicode (curl: zero-extension) do too.
    return raw.decode("latin-1")


def _av_pair(av_id: AvId, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def target_info(names: TargetNames, timestamp: int) -> bytes:
    """The CHALLENGE's TargetInfo AV pairs (2.2.2.1); AV pair strings are always Unicode.

    MsvAvTimestamp makes current clients add a MIC to AUTHENTICATE (3.1.5.1.2).
    """
    pairs = [
        (AvId.NB_DOMAIN_NAME, names.netbios_domain),
        (AvId.NB_COMPUTER_NAME, names.netbios_computer),
        (AvId.DNS_DOMAIN_NAME, names.dns_domain),
        (AvId.DNS_COMPUTER_NAME, names.dns_computer),
    ]
    body = b"".join(_av_pair(av_id, text.encode("utf-16-le")) for av_id, text in pairs)
    body += _av_pair(AvId.TIMESTAMP, struct.pack("<Q", timestamp))
    return body + _av_pair(AvId.EOL, b"")


def build_challenge(
    flags: Flag, server_challenge: bytes, names: TargetNames, timestamp: int
) -> bytes:
    """A CHALLENGE_MESSAGE (2.2.1.2) with ``flags`` from ``challenge_flags``.

    ``timestamp`` is the server time as a FILETIME (100 ns ticks since 1601-01-01 UTC).
    """
    assert len(server_challenge) == 8
    target_name = encode_text(names.netbios_domain if flags & Flag.REQUEST_TARGET else "", flags)
    info = target_info(names, timestamp)
    name_offset = CHALLENGE_HEADER_SIZE
    info_offset = name_offset + len(target_name)
    version = SERVER_VERSION if flags & Flag.VERSION else bytes(8)
    header = (
        SIGNATURE
        + struct.pack("<IHHII", CHALLENGE, len(target_name), len(target_name), name_offset, flags)
        + server_challenge
        + bytes(8)  # Reserved
        + struct.pack("<HHI", len(info), len(info), info_offset)
        + version
    )
    assert len(header) == CHALLENGE_HEADER_SIZE
    return header + target_name + info


def parse_authenticate(data: bytes, negotiated: Flag) -> AuthenticateMessage:
    """Parse an AUTHENTICATE_MESSAGE (2.2.1.3).

    Old clients (fetchmail, libntlm) send a shorter header: their payload starts before
    the NegotiateFlags, Version or MIC field would.  Where a field would overlap the
    payload it is absent: the flags then default to ``negotiated`` and there is no MIC.
    """
    _header(data, AUTHENTICATE, 52)
    lm, lm_at = _field(data, 12)
    nt, nt_at = _field(data, 20)
    domain_raw, domain_at = _field(data, 28)
    user_raw, user_at = _field(data, 36)
    workstation_raw, ws_at = _field(data, 44)
    offsets = [at for at in (lm_at, nt_at, domain_at, user_at, ws_at) if at]
    session_key = b""
    flags = negotiated
    header_end = min(offsets, default=len(data))
    if header_end >= 64 and len(data) >= 64:
        session_key, key_at = _field(data, 52)
        header_end = min(header_end, key_at or header_end)
        (raw_flags,) = struct.unpack_from("<I", data, 60)
        flags = Flag(raw_flags)
    mic = None
    if header_end >= AUTHENTICATE_MIC_OFFSET + MIC_SIZE and len(data) >= 88:
        mic = data[AUTHENTICATE_MIC_OFFSET : AUTHENTICATE_MIC_OFFSET + MIC_SIZE]
    return AuthenticateMessage(
        lm_response=lm,
        nt_response=nt,
        domain=decode_text(domain_raw, flags),
        user=decode_text(user_raw, flags),
        workstation=decode_text(workstation_raw, flags),
        encrypted_session_key=session_key,
        flags=flags,
        mic=mic,
        raw=data,
    )


def parse_av_pairs(data: bytes) -> dict[int, bytes]:
    """AV pairs up to MsvAvEOL (2.2.2.1); the first of a repeated id wins."""
    pairs: dict[int, bytes] = {}
    at = 0
    while True:
        if at + 4 > len(data):
            raise MalformedMessage("AV pair list is not terminated")
        av_id, length = struct.unpack_from("<HH", data, at)
        at += 4
        if av_id == AvId.EOL:
            return pairs
        if at + length > len(data):
            raise MalformedMessage("AV pair runs past the end of the list")
        pairs.setdefault(av_id, data[at : at + length])
        at += length
