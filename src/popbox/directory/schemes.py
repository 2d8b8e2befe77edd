"""Dovecot password schemes: ``{SCHEME}hash`` strings read, checked and verified.

Theory of operation: ``parse`` reads a stored string once (when a passwd-file is loaded or
an imported hash is used) into a ``StoredHash`` and rejects what cannot be verified, so a
bad line is reported when the file is read rather than as a failed login.  ``verify`` is
blocking; ``costly`` says whether the caller should run it on a thread.

Which code verifies what, and why:

* the crypt(3) family (``SHA512-CRYPT`` ``$6$``, ``SHA256-CRYPT`` ``$5$``, ``MD5-CRYPT``
  ``$1$``, ``BLF-CRYPT`` ``$2y$``, and ``CRYPT``: any of those or traditional DES) by
  libpass, the maintained passlib fork (Python 3.13 removed the ``crypt`` module; libpass
  has its own implementations and uses the ``bcrypt`` package for bcrypt);
* ``ARGON2I`` / ``ARGON2ID`` by argon2-cffi, which popbox's own hashes use too;
* ``SHA256`` / ``SHA512`` (the digest) and ``SSHA`` / ``SSHA256`` / ``SSHA512`` (the
  digest of password + salt, followed by the salt) by ``hashlib``.  The framing around
  the digest is Dovecot's own (``src/auth/password-scheme.c``) and a few lines, so it is
  written here: libpass's LDAP ``{SSHA}`` handlers fix the salt lengths Dovecot does not;
* ``PLAIN`` / ``CLEAR``: the password itself, compared in constant time.

Suffixes (Dovecot's ``.B64`` / ``.HEX``) say how the binary value is written: for the
digest schemes base64 is the default and ``.HEX`` means hex; ``PLAIN.B64`` / ``PLAIN.HEX``
hold the password encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import sys
from dataclasses import dataclass
from typing import Any, Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from passlib.hash import bcrypt, des_crypt, md5_crypt, sha256_crypt, sha512_crypt

__all__ = ["SCHEMES", "SchemeError", "StoredHash", "costly", "parse", "verify"]


class SchemeError(ValueError):
    """A stored hash whose scheme is unknown or whose value is not of that scheme."""


# Digest schemes: name -> (hashlib name, digest octets, salted).
_DIGESTS: Final = {
    "SHA256": ("sha256", 32, False),
    "SHA512": ("sha512", 64, False),
    "SSHA": ("sha1", 20, True),
    "SSHA256": ("sha256", 32, True),
    "SSHA512": ("sha512", 64, True),
}
# crypt(3) variants by the "$id$" prefix of the hash.
_CRYPT_PREFIXES: Final[tuple[tuple[str, Any], ...]] = (
    ("$6$", sha512_crypt),
    ("$5$", sha256_crypt),
    ("$1$", md5_crypt),
    ("$2a$", bcrypt),
    ("$2b$", bcrypt),
    ("$2y$", bcrypt),
)
_CRYPT_SCHEMES: Final[dict[str, Any]] = {
    "SHA512-CRYPT": sha512_crypt,
    "SHA256-CRYPT": sha256_crypt,
    "MD5-CRYPT": md5_crypt,
    "BLF-CRYPT": bcrypt,
}
_ARGON2: Final = {"ARGON2I": "$argon2i$", "ARGON2ID": "$argon2id$"}
_PLAIN: Final = ("PLAIN", "CLEAR")
SCHEMES: Final = (*_CRYPT_SCHEMES, "CRYPT", *_ARGON2, *_DIGESTS, *_PLAIN)
_ENCODINGS: Final = ("B64", "HEX")
# Checks cheaper than a thread hop (measured: a hash digest, a comparison) run inline.
_CHEAP: Final = (*_DIGESTS, *_PLAIN)
# So does an argon2 check of at most this cost (KiB of memory x passes, e.g. a hash made
# with test or benchmark settings): the hand-off to a thread and back costs more than it
# (measured with bench/).
INLINE_COST: Final = 256
_PHC_COST: Final = re.compile(r"\$argon2(?:id|i)\$v=\d+\$m=(\d{1,10}),t=(\d{1,10}),p=\d+\$")
# Verifying reads the parameters from the hash; one hasher serves every thread.
_ARGON2_HASHER: Final = argon2.PasswordHasher()


@dataclass(frozen=True, slots=True)
class StoredHash:
    """A parsed ``{SCHEME.ENCODING}value``: the scheme upper-cased, the encoding "" for
    the scheme's own."""

    scheme: str
    encoding: str
    value: str

    def __str__(self) -> str:
        suffix = f".{self.encoding}" if self.encoding else ""
        return f"{{{self.scheme}{suffix}}}{self.value}"


def parse(text: str, default_scheme: str) -> StoredHash:
    """Read ``{SCHEME}value`` (``default_scheme`` when there is no prefix).

    Raises ``SchemeError`` naming the problem: an unknown scheme or suffix, or a value
    that is not of its scheme (so it could never be verified).
    """
    label, value = default_scheme, text
    if text.startswith("{") and "}" in text:
        label, _, value = text[1:].partition("}")
    name, dot, encoding = label.upper().partition(".")
    if name == "CLEARTEXT":
        name = "CLEAR"
    if name not in SCHEMES:
        raise SchemeError(f"unknown password scheme {label!r}")
    if dot and (encoding not in _ENCODINGS or name not in (*_DIGESTS, *_PLAIN)):
        raise SchemeError(f"scheme {label!r}: the suffix .{encoding} does not apply")
    stored = StoredHash(name, encoding, value)
    _check(stored)
    return stored


def costly(stored: StoredHash) -> bool:
    """True when verifying takes long enough (a key-stretching scheme) to need a thread."""
    if stored.scheme in _CHEAP:
        return False
    if stored.scheme in _ARGON2:
        return argon2_cost(stored.value) > INLINE_COST
    return True


def argon2_cost(phc: str) -> int:
    """Memory (KiB) times passes as an argon2 PHC string states them; unreadable: no limit."""
    match = _PHC_COST.match(phc)
    return int(match[1]) * int(match[2]) if match else sys.maxsize


def verify(stored: StoredHash, password: str) -> bool:
    """True when ``password`` matches; blocking for the key-stretching schemes."""
    if stored.scheme in _PLAIN:
        return hmac.compare_digest(_binary(stored), password.encode("utf-8"))
    if stored.scheme in _DIGESTS:
        algorithm, size, salted = _DIGESTS[stored.scheme]
        raw = _binary(stored)
        digest, salt = raw[:size], raw[size:]
        computed = hashlib.new(algorithm, password.encode("utf-8") + salt).digest()
        return (bool(salt) == salted) and hmac.compare_digest(digest, computed)
    if stored.scheme in _ARGON2:
        try:
            return _ARGON2_HASHER.verify(stored.value, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    try:
        return bool(_crypt_handler(stored).verify(password, stored.value))
    except ValueError:  # bcrypt refuses passwords over 72 octets rather than truncate them
        return False


def _check(stored: StoredHash) -> None:
    """Raise ``SchemeError`` unless ``stored.value`` is a well-formed value of its scheme."""
    scheme = stored.scheme
    if scheme in _PLAIN:
        _binary(stored)
    elif scheme in _DIGESTS:
        _, size, salted = _DIGESTS[scheme]
        length = len(_binary(stored))
        if length < size or (length > size) != salted:
            raise SchemeError(f"{scheme} value has {length} octets, not a {scheme} hash")
    elif scheme in _ARGON2:
        if not stored.value.startswith(_ARGON2[scheme]):
            raise SchemeError(f"{scheme} value does not start with {_ARGON2[scheme]}")
        try:
            argon2.extract_parameters(stored.value)
        except InvalidHashError as exc:
            raise SchemeError(f"{scheme} value is not an argon2 hash") from exc
    else:
        handler = _crypt_handler(stored)
        try:
            handler.from_string(stored.value)
        except (ValueError, TypeError) as exc:
            raise SchemeError(f"{scheme} value is not a {handler.name} hash") from exc


def _crypt_handler(stored: StoredHash) -> Any:
    if stored.scheme != "CRYPT":
        handler = _CRYPT_SCHEMES[stored.scheme]
        if not handler.identify(stored.value):
            raise SchemeError(f"{stored.scheme} value is not a {handler.name} hash")
        return handler
    for prefix, handler in _CRYPT_PREFIXES:
        if stored.value.startswith(prefix):
            return handler
    if des_crypt.identify(stored.value):
        return des_crypt
    raise SchemeError("CRYPT value is none of $1$, $5$, $6$, $2y$ or traditional DES")


def _binary(stored: StoredHash) -> bytes:
    """The octets ``stored.value`` encodes (PLAIN: UTF-8 unless a suffix says otherwise)."""
    plain = stored.scheme in _PLAIN
    encoding = stored.encoding or ("" if plain else "B64")
    try:
        if encoding == "HEX":
            return bytes.fromhex(stored.value)
        if encoding == "B64":
            return base64.b64decode(stored.value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemeError(f"{stored.scheme} value is not valid {encoding.lower()}") from exc
    return stored.value.encode("utf-8")
