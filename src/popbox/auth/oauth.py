"""OAUTHBEARER (RFC 7628) and XOAUTH2: log in with a JWT access token.

Theory of operation: the client sends the token in its one message (OAUTHBEARER's
``n,a=authzid,^Aauth=Bearer TOKEN^A^A`` or XOAUTH2's ``user=NAME^Aauth=Bearer TOKEN^A^A``).
The token must be a JWT signed by a key of the configured JWKS (``jwks.JwksCache``),
with an algorithm from ``auth.oauth_algorithms``, and carry the configured issuer and
audience and an unexpired ``exp``.  Its user is the first of ``auth.oauth_user_claims``
present (``email``, then ``sub``), less ``@auth.oauth_strip_domain``; that mailbox must
exist, and a name the client gave must be that user.

A refusal follows RFC 7628 s3.2.2: the error JSON goes out as a challenge, the client
answers (``^A`` for OAUTHBEARER, empty for XOAUTH2) and then gets ``-ERR [AUTH]``.  A JWKS
that cannot be loaded is the server's problem, not the token's: the client gets
``[SYS/TEMP]`` (``StoreTemporaryError``) and keeps its token.

A bearer token is as good as a password for its lifetime, so both mechanisms are
``plaintext``: under ``secure_login`` they are offered over TLS only (V0010).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import jwt

from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.plain import text_field
from popbox.protocol.mechanisms import OAUTHBEARER, XOAUTH2

if TYPE_CHECKING:
    from popbox.auth.base import AuthContext, Step
    from popbox.auth.jwks import JwksCache

__all__ = ["OAuthBearerMechanism", "OAuthSettings", "TokenChecker", "XOAuth2Mechanism"]

ERROR_JSON: Final = json.dumps({"status": "invalid_token", "schemes": "bearer"}).encode()
_BEARER: Final = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
_SASLNAME: Final = re.compile(rb"(?:[^=,]|=2C|=3D)*")
# Log reasons for the token failures an operator most needs to tell apart.
_REASONS: Final = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.InvalidAudienceError, "token audience is wrong"),
    (jwt.InvalidIssuerError, "token issuer is wrong"),
    (jwt.InvalidSignatureError, "token signature is wrong"),
    (jwt.MissingRequiredClaimError, "token lacks exp, iss or aud"),
)


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    user_claims: tuple[str, ...] = ("email", "sub")
    strip_domain: str = ""
    leeway: float = 30.0


class TokenChecker:
    """Validates access tokens; one per server, shared by every session (JWKS cache)."""

    def __init__(self, settings: OAuthSettings, jwks: JwksCache) -> None:
        self.settings = settings
        self._jwks = jwks

    async def user_of(self, token: str) -> str | Failure:
        """The mailbox name the token grants, or a Failure saying why not (for the log)."""
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Failure("bearer token is not a JWT")
        algorithm = header.get("alg")
        if algorithm not in settings.algorithms:
            return Failure(f"token algorithm {str(algorithm)[:20]!r} is not accepted")
        key = await self._jwks.key_for(header.get("kid"), algorithm)
        if key is None:
            return Failure("no JWKS key matches the token's kid and alg")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), None)
            return Failure(reason or f"token refused: {type(exc).__name__}")
        return self._mailbox(claims)

    def _mailbox(self, claims: dict[str, Any]) -> str | Failure:
        for claim in self.settings.user_claims:
            value = claims.get(claim)
            if isinstance(value, str) and value:
                domain = self.settings.strip_domain
                if domain and value.lower().endswith("@" + domain.lower()):
                    value = value[: -len(domain) - 1]
                return value
        return Failure("token names no user in the configured claims")


class _BearerMechanism:
    """The exchange both mechanisms share: one message, then success or error JSON."""

    plaintext: ClassVar[bool] = True
    # (the name the client gave or "", the auth= value) from the client's one message
    parse: ClassVar[staticmethod[[bytes], tuple[str, bytes] | Failure]]

    def __init__(self, context: AuthContext, checker: TokenChecker) -> None:
        self._context = context
        self._checker = checker
        self._waiting = False
        self._refused: Failure | None = None

    async def start(self, initial: bytes | None) -> Step:
        if not initial:
            self._waiting = True
            return Challenge(b"")
        return await self._verify(initial)

    async def step(self, response: bytes) -> Step:
        if self._refused is not None:  # the client's answer to the error JSON
            return self._refused
        if not self._waiting:
            return Failure("bearer mechanisms take one client message")
        self._waiting = False
        return await self._verify(response)

    async def _verify(self, message: bytes) -> Step:
        parsed = self.parse(message)
        if isinstance(parsed, Failure):
            return parsed
        claimed, token_match = parsed
        token = _BEARER.fullmatch(token_match)
        if token is None:
            return Failure("no Bearer token in auth=", claimed or None)
        user = await self._checker.user_of(token.group(1).decode("ascii"))
        if isinstance(user, str):
            if claimed and claimed != user:
                user = Failure("the name given is not the token's user", claimed)
            elif await self._context.store.get_user(user) is None:
                user = Failure("the token's user has no mailbox", user)
            else:
                return Success(user)
        self._refused = Failure(user.reason, user.user or claimed or None)
        return Challenge(ERROR_JSON)  # RFC 7628 s3.2.2


def _parse_oauthbearer(message: bytes) -> tuple[str, bytes] | Failure:
    """RFC 7628 s3.1: gs2 header, then ^A-separated key=value pairs, then ^A^A."""
    flag, sep1, rest = message.partition(b",")
    authz, sep2, pairs = rest.partition(b",")
    if not (sep1 and sep2) or flag not in (b"n", b"y"):
        return Failure("OAUTHBEARER gs2 header is malformed or asks for channel binding")
    claimed = ""
    if authz:
        raw = authz[2:]
        name = text_field(raw.replace(b"=2C", b",").replace(b"=3D", b"="))
        if not authz.startswith(b"a=") or not _SASLNAME.fullmatch(raw) or name is None:
            return Failure("OAUTHBEARER authzid is malformed")
        claimed = name
    fields = _kvpairs(pairs, leading=True)
    if fields is None or b"auth" not in fields:
        return Failure("OAUTHBEARER message is malformed", claimed or None)
    return claimed, fields[b"auth"]


def _parse_xoauth2(message: bytes) -> tuple[str, bytes] | Failure:
    """XOAUTH2: ``user=NAME^Aauth=Bearer TOKEN^A^A``."""
    fields = _kvpairs(message, leading=False)
    if fields is None or b"auth" not in fields:
        return Failure("XOAUTH2 message is malformed")
    claimed = text_field(fields.get(b"user", b""), allow_empty=True)
    if claimed is None:
        return Failure("XOAUTH2 user is not valid text")
    return claimed, fields[b"auth"]


def _kvpairs(data: bytes, *, leading: bool) -> dict[bytes, bytes] | None:
    """``[^A]key=value^A...^A^A`` as a dict; None when malformed (RFC 7628 s3.1)."""
    if leading:
        if not data.startswith(b"\x01"):
            return None
        data = data[1:]
    if not data.endswith(b"\x01\x01"):
        return None
    fields: dict[bytes, bytes] = {}
    for pair in data[:-2].split(b"\x01"):
        key, sep, value = pair.partition(b"=")
        if not sep or not key.isalpha() or key in fields:
            return None
        fields[key] = value
    return fields


class OAuthBearerMechanism(_BearerMechanism):
    """RFC 7628 OAUTHBEARER."""

    name: ClassVar[str] = OAUTHBEARER
    parse = staticmethod(_parse_oauthbearer)


class XOAuth2Mechanism(_BearerMechanism):
    """Google's and Microsoft's XOAUTH2."""

    name: ClassVar[str] = XOAUTH2
    parse = staticmethod(_parse_xoauth2)
