"""AUTH NTLM: the server side of [MS-NLMP] in the exchange of [MS-OXPOP3].

Theory of operation: ``AUTH NTLM`` is answered with an empty challenge ("+ ", what
fetchmail waits for, [MS-OXPOP3] 2.2.1); the client then sends NEGOTIATE (or sends it at
once as the initial response), the server answers with CHALLENGE ("+ " and base64), the
client sends AUTHENTICATE, and the server answers +OK or -ERR.

NTLMv2 is verified against the user's stored NT hash (the "nt" verifier: MD4 of the
UTF-16LE password), the MIC is checked whenever the client says it sent one, and the
exported session key is derived because the MIC is keyed with it.  NTLMv1 (and its LM
response) is refused unless ``auth.ntlm_allow_v1`` is set: fetchmail and mpop send
nothing else.  An unknown user, a user without an NT hash and a wrong password cost
the same work and get the same answer.

Why the protocol is implemented here rather than by pyspnego: its NTLM acceptor reads
credentials only from a user file named by an environment variable and has no hook for
looking a user up elsewhere, so using it against popbox's store would mean writing every
user's NT hash to a file or patching its private functions.  The server side of NTLM is
small (three message formats, HMAC-MD5, DES and RC4 from pycryptodome), and owning it
lets every length and offset from the client be checked before use.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.ntlm_crypto import (
    NTLMV1_RESPONSE_SIZE,
    NTLMV2_BLOB_HEADER,
    Verified,
    compute_mic,
    exported_session_key,
    verify_v1,
    verify_v2,
)
from popbox.auth.ntlm_messages import (
    AUTHENTICATE_MIC_OFFSET,
    AV_FLAG_MIC_PRESENT,
    AvId,
    Flag,
    MalformedMessage,
    TargetNames,
    build_challenge,
    challenge_flags,
    parse_authenticate,
    parse_av_pairs,
    parse_negotiate,
)
from popbox.auth.passwords import NT
from popbox.protocol.mechanisms import NTLM

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.base import AuthContext, Step
    from popbox.auth.ntlm_messages import AuthenticateMessage

__all__ = ["NtlmMechanism", "NtlmSettings", "filetime", "target_names"]

# Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
_FILETIME_EPOCH_OFFSET: Final = 11644473600
# Verified against when the user is unknown or has no NT hash, so that case costs the
# same as a wrong password.  No password hashes to it (that would be an MD4 preimage).
_DUMMY_NT_HASH: Final = bytes(16)


@dataclass(frozen=True, slots=True)
class NtlmSettings:
    names: TargetNames
    allow_v1: bool = False  # accept NTLMv1 responses (auth.ntlm_allow_v1)


def target_names(domain: str, server_name: str = "") -> TargetNames:
    """How the server names itself: NetBIOS names are the upper-cased first 15 octets."""
    host = (server_name or socket.gethostname()).lower()
    first, _, rest = host.partition(".")
    return TargetNames(
        netbios_domain=domain.upper()[:15],
        netbios_computer=first.upper()[:15],
        dns_domain=rest or domain.lower(),
        dns_computer=host,
    )


def filetime(seconds: float) -> int:
    """POSIX seconds as a Windows FILETIME: 100 ns ticks since 1601-01-01 UTC."""
    return int((seconds + _FILETIME_EPOCH_OFFSET) * 10_000_000)


class NtlmMechanism:
    name: ClassVar[str] = NTLM
    plaintext: ClassVar[bool] = False  # the password never crosses the wire

    def __init__(
        self,
        context: AuthContext,
        settings: NtlmSettings,
        *,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._context = context
        self._settings = settings
        self._clock = clock
        self._server_challenge = nonce(8)
        self._negotiate = b""
        self._challenge = b""
        self._flags = Flag(0)
        self._finished = False
        # The exported session key ([MS-NLMP] 3.2.5.1.2) once a login succeeded.  POP3
        # negotiates no NTLM security layer, so nothing seals with it; it keys the MIC.
        self.session_key: bytes | None = None

    async def start(self, initial: bytes | None) -> Step:
        if not initial:
            return Challenge(b"")  # [MS-OXPOP3] 2.2.1: "+ ", then the client's NEGOTIATE
        return self._answer_negotiate(initial)

    async def step(self, response: bytes) -> Step:
        if self._finished:
            return Failure("NTLM exchange already finished")
        if not self._challenge:
            return self._answer_negotiate(response)
        self._finished = True
        return await self._check_authenticate(response)

    def _answer_negotiate(self, data: bytes) -> Step:
        try:
            negotiate = parse_negotiate(data)
        except MalformedMessage as exc:
            self._finished = True
            return Failure(f"malformed NTLM NEGOTIATE: {exc}")
        self._negotiate = negotiate.raw
        self._flags = challenge_flags(negotiate.flags)
        self._challenge = build_challenge(
            self._flags, self._server_challenge, self._settings.names, filetime(self._clock())
        )
        return Challenge(self._challenge)

    async def _check_authenticate(self, data: bytes) -> Step:
        try:
            message = parse_authenticate(data, self._flags)
        except MalformedMessage as exc:
            return Failure(f"malformed NTLM AUTHENTICATE: {exc}")
        user = message.user
        if not user or not message.nt_response:
            return Failure("anonymous NTLM logins are not allowed", user or None)
        if len(message.nt_response) == NTLMV1_RESPONSE_SIZE and not self._settings.allow_v1:
            return Failure("NTLMv1 refused (auth.ntlm_allow_v1 is off)", user)
        record = await self._context.store.get_user(user)
        nt_hash = _nt_hash(record.verifiers.get(NT) if record is not None else None)
        try:
            verified = self._verify(message, nt_hash or _DUMMY_NT_HASH)
        except MalformedMessage as exc:
            return Failure(f"malformed NTLM response: {exc}", user)
        if record is None or nt_hash is None or verified is None:
            return Failure("wrong password, unknown user or no NT hash stored", user)
        return Success(record.name)

    def _verify(self, message: AuthenticateMessage, nt_hash: bytes) -> Verified | None:
        nt_response = message.nt_response
        if len(nt_response) == NTLMV1_RESPONSE_SIZE:
            ess = bool(self._flags & message.flags & Flag.EXTENDED_SESSIONSECURITY)
            verified = verify_v1(
                nt_hash,
                self._server_challenge,
                message.lm_response,
                nt_response,
                extended_session_security=ess,
            )
            return self._keyed(message, verified, mic_promised=False)
        verified = None
        # Clients differ in the domain they hash (3.3.2 says UserDom; some upper-case it
        # or leave it out); every candidate is tried, whether or not the user exists.
        for domain in dict.fromkeys((message.domain, message.domain.upper(), "")):
            verified = verify_v2(nt_hash, message.user, domain, self._server_challenge, nt_response)
            if verified is not None:
                break
        pairs = parse_av_pairs(nt_response[16 + NTLMV2_BLOB_HEADER :])
        return self._keyed(message, verified, mic_promised=_mic_promised(pairs))

    def _keyed(
        self, message: AuthenticateMessage, verified: Verified | None, *, mic_promised: bool
    ) -> Verified | None:
        """Derive the exported session key; check the MIC when the client announced one.

        [MS-NLMP] 3.2.5.1.2: a MIC the client's MsvAvFlags promise must be there and
        match, or the messages may have been tampered with (flags downgraded) on the way.
        """
        if verified is None:
            return None
        session_key = exported_session_key(
            verified.key_exchange_key,
            message.encrypted_session_key,
            key_exch=bool(self._flags & message.flags & Flag.KEY_EXCH),
        )
        if mic_promised:
            if message.mic is None:
                return None
            expected = compute_mic(
                session_key, self._negotiate, self._challenge, message.raw, AUTHENTICATE_MIC_OFFSET
            )
            if not secrets.compare_digest(expected, message.mic):
                return None
        self.session_key = session_key
        return verified


def _mic_promised(pairs: dict[int, bytes]) -> bool:
    raw = pairs.get(AvId.FLAGS)
    if raw is None or len(raw) != 4:
        return False
    (flags,) = struct.unpack("<I", raw)
    return bool(flags & AV_FLAG_MIC_PRESENT)


def _nt_hash(stored: str | None) -> bytes | None:
    if stored is None:
        return None
    with contextlib.suppress(ValueError):
        raw = bytes.fromhex(stored)
        if len(raw) == 16:
            return raw
    return None
