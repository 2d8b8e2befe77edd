"""SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, against RFC 5803 stored verifiers.

Theory of operation, one exchange (RFC 5802 s5; RFC 5034 carries each message):

    C: n,,n=user,r=<client nonce>            (client-first; gs2 header "n,," or "y,,")
    S: r=<client nonce><server nonce>,s=<salt>,i=<iterations>
    C: c=biws,r=<both nonces>,p=<ClientProof>
    S: v=<ServerSignature>                   (a last "+ " challenge, RFC 5034 s4)
    C: (empty)                               → +OK

The server keeps StoredKey and ServerKey only (``passwords.scram_verifier``), so a
stolen database does not give passwords away, and a proof is checked by recovering
ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage) and comparing H(ClientKey) with
StoredKey in constant time.  An unknown user (or one without a SCRAM verifier) gets a
salt derived from a server secret and the name, always the same for that name, and the
same iteration count as real users, so server-first does not reveal who exists; the
proof check then runs against random keys and fails after the same work.

Channel binding ("p=" in the gs2 header, SCRAM-SHA-256-PLUS) is not offered: a client
asking for it is refused.  "y" (client supports binding, thinks the server does not) is
accepted because the server indeed does not advertise -PLUS (RFC 5802 s6).

Written by hand rather than with a library: the maintained Python implementation
(scramp) calls a synchronous lookup function from inside its message parser, which our
asynchronous store cannot answer without parsing every message twice, and it has no
notion of fake salts for unknown users.  The protocol is a few HMACs (hashlib/hmac).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.passwords import SCRAM_SALT_LEN, SCRAM_SHA256, ScramVerifier, parse_scram_verifier
from popbox.auth.plain import text_field
from popbox.protocol.mechanisms import SCRAM_SHA_256

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.auth.base import AuthContext, Step

__all__ = ["ScramMechanism", "ScramSettings", "load_or_create_secret", "random_nonce"]

NONCE_OCTETS: Final = 24
_SASLNAME: Final = re.compile(rb"(?:[^=,]|=2C|=3D)*")
_PRINTABLE: Final = frozenset(range(0x21, 0x7F)) - {ord(",")}  # RFC 5802 s7 "printable"


def random_nonce() -> bytes:
    """The server's part of the nonce: 24 random octets, base64 (printable, no comma)."""
    return _b64(secrets.token_bytes(NONCE_OCTETS))


@dataclass(frozen=True, slots=True)
class ScramSettings:
    secret: bytes  # keys the fake salts of unknown users; never changes for a data_dir
    iterations: int  # what unknown users claim, the same as new real verifiers
    admins: frozenset[str] = frozenset()
    nonce: Callable[[], bytes] = random_nonce  # replaceable to replay RFC 7677's example


@dataclass(frozen=True, slots=True)
class _First:
    """What client-first and server-first fixed, for checking client-final."""

    gs2_header: bytes
    user: str  # the mailbox to open: authzid if given, else the authenticated name
    authcid: str
    nonce: bytes  # client nonce + server nonce
    bare_messages: bytes  # client-first-bare "," server-first
    verifier: ScramVerifier
    known: bool


class ScramMechanism:
    """One SCRAM-SHA-256 exchange."""

    name: ClassVar[str] = SCRAM_SHA_256
    plaintext: ClassVar[bool] = False  # the password never crosses the wire

    def __init__(self, context: AuthContext, settings: ScramSettings) -> None:
        self._context = context
        self._settings = settings
        self._first: _First | None = None
        self._verified: str | None = None  # after server-final: the user to log in

    async def start(self, initial: bytes | None) -> Step:
        if not initial:  # client-first comes after an empty challenge
            return Challenge(b"")
        return await self._client_first(initial)

    async def step(self, response: bytes) -> Step:
        if self._verified is not None:
            if response:  # RFC 5034 s4: the answer to the final challenge is empty
                return Failure("data after SCRAM server-final", self._verified)
            return Success(self._verified)
        if self._first is None:
            return await self._client_first(response)
        return self._client_final(response, self._first)

    async def _client_first(self, message: bytes) -> Step:
        parsed = _parse_client_first(message)
        if isinstance(parsed, Failure):
            return parsed
        gs2_header, authzid, authcid, client_nonce, bare = parsed
        if authzid and authzid != authcid and authcid not in self._settings.admins:
            return Failure("SCRAM authzid differs and the user is no admin", authcid)
        record = await self._context.store.get_user(authcid)
        stored = record.verifiers.get(SCRAM_SHA256) if record is not None else None
        verifier = parse_scram_verifier(stored) if stored is not None else None
        known = verifier is not None
        if authzid and authzid != authcid and await self._context.store.get_user(authzid) is None:
            known = False  # an admin naming a missing mailbox fails like a wrong proof
        if verifier is None:
            verifier = self._fake_verifier(authcid)
        nonce = client_nonce + self._settings.nonce()
        server_first = b"r=%s,s=%s,i=%d" % (nonce, _b64(verifier.salt), verifier.iterations)
        self._first = _First(
            gs2_header=gs2_header,
            user=authzid or authcid,
            authcid=authcid,
            nonce=nonce,
            bare_messages=bare + b"," + server_first,
            verifier=verifier,
            known=known,
        )
        return Challenge(server_first)

    def _client_final(self, message: bytes, first: _First) -> Step:
        without_proof, sep, proof_b64 = message.rpartition(b",p=")
        attributes = without_proof.split(b",")
        expected = [b"c=" + _b64(first.gs2_header), b"r=" + first.nonce]
        if not sep or attributes[:2] != expected:
            # Channel binding data that differs from the gs2 header is a downgrade or
            # a confused client; a different nonce is a replayed or spliced message.
            return Failure("SCRAM client-final is malformed or does not match", first.authcid)
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            proof = b""
        verifier = first.verifier
        auth_message = first.bare_messages + b"," + without_proof
        signature = hmac.digest(verifier.stored_key, auth_message, "sha256")
        if len(proof) != len(signature):
            return Failure("SCRAM proof is not base64 of the right length", first.authcid)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        matches = hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key)
        if not (matches and first.known):
            self._first = None
            return Failure("wrong password or unknown user", first.authcid)
        server_signature = hmac.digest(verifier.server_key, auth_message, "sha256")
        self._verified = first.user
        return Challenge(b"v=" + _b64(server_signature))

    def _fake_verifier(self, name: str) -> ScramVerifier:
        """A verifier for a user who has none: stable salt per name, keys nobody knows."""
        salt = hmac.digest(self._settings.secret, b"scram-salt\0" + name.encode(), "sha256")
        return ScramVerifier(
            iterations=self._settings.iterations,
            salt=salt[:SCRAM_SALT_LEN],
            stored_key=secrets.token_bytes(32),
            server_key=secrets.token_bytes(32),
        )


def _parse_client_first(  # noqa: PLR0911 - one return per RFC 5802 s7 rule
    message: bytes,
) -> tuple[bytes, str, str, bytes, bytes] | Failure:
    """(gs2 header, authzid, authcid, client nonce, client-first-bare), or why not."""
    flag, sep1, rest = message.partition(b",")
    authz_attr, sep2, bare = rest.partition(b",")
    if not (sep1 and sep2):
        return Failure("SCRAM client-first is malformed")
    if flag.startswith(b"p="):
        return Failure("SCRAM channel binding was requested but is not offered")
    if flag not in (b"n", b"y"):
        return Failure("SCRAM gs2 header is malformed")
    authzid = ""
    if authz_attr:
        decoded = _saslname(authz_attr[2:]) if authz_attr.startswith(b"a=") else None
        if decoded is None:
            return Failure("SCRAM authzid is malformed")
        authzid = decoded
    attributes = bare.split(b",")
    if len(attributes) < 2 or attributes[0].startswith(b"m="):
        return Failure("SCRAM client-first-bare is malformed or has mandatory extensions")
    name_attr, nonce_attr = attributes[0], attributes[1]
    authcid = _saslname(name_attr[2:]) if name_attr.startswith(b"n=") else None
    if authcid is None or not authcid:
        return Failure("SCRAM user name is malformed")
    nonce = nonce_attr[2:]
    if not nonce_attr.startswith(b"r=") or not nonce or not set(nonce) <= _PRINTABLE:
        return Failure("SCRAM client nonce is malformed", authcid)
    return flag + b"," + authz_attr + b",", authzid, authcid, nonce, bare


def _saslname(raw: bytes) -> str | None:
    """RFC 5802 s7 saslname: "=2C" is ",", "=3D" is "=", any other "=" is an error."""
    if not _SASLNAME.fullmatch(raw):
        return None
    return text_field(raw.replace(b"=2C", b",").replace(b"=3D", b"="))


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def load_or_create_secret(path: Path) -> bytes:
    """The server secret behind fake salts, created (mode 0600) on first use.

    It must outlive restarts: a fake salt that changed between two probes of the same
    name would tell that the name does not exist.
    """
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written in full under a private name (mode 0600), then linked into place: a
        # worker that loses the race reads a complete file, never the empty one an
        # O_EXCL create shows before its write.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            with contextlib.suppress(FileExistsError):  # another worker won: use its secret
                path.hardlink_to(tmp)
        finally:
            tmp.unlink()
        secret = path.read_bytes()
    if len(secret) < 16:
        raise ValueError(f"{path}: the auth secret must hold at least 16 bytes")
    return secret
