"""The JSON Web Key Set access tokens are checked against: a file, or an https URL.

Theory of operation: one ``JwksCache`` per server holds the parsed keys and when they
were loaded.  They are reloaded after ``auth.oauth_jwks_ttl`` seconds, and early when a
token names a key id the set does not have (the issuer rotated its keys), but not more
often than every ``REFRESH_FLOOR`` seconds, so tokens with made-up key ids cannot make
the server hammer the identity provider.  If a reload fails the previous keys stay in
use; with no keys at all the login is answered ``[SYS/TEMP]`` (``JwksUnavailable``), since
the token may well be good.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt

from popbox.store.base import StoreTemporaryError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["JwksCache", "JwksUnavailable"]

REFRESH_FLOOR: Final = 30.0  # seconds between two early reloads
FETCH_TIMEOUT: Final = 10.0
MAX_JWKS_OCTETS: Final = 1024 * 1024


class JwksUnavailable(StoreTemporaryError):
    """The key set could not be loaded; the client should try again later."""


class JwksCache:
    """Signing keys by key id, loaded from ``source`` and reused for ``ttl`` seconds."""

    def __init__(
        self,
        source: str,
        *,
        ttl: float = 3600.0,
        ca_file: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._ca_file = ca_file
        self._clock = clock
        self._keys: list[_Key] | None = None
        self._loaded_at = -float("inf")
        self._tried_at = -float("inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: object, algorithm: str) -> jwt.PyJWK | None:
        """The key that may have signed a token with this ``kid`` header and ``alg``."""
        if self._clock() - self._loaded_at >= self._ttl:
            await self._reload()
        key = _pick(self._keys or [], kid, algorithm)
        if key is None and self._clock() - self._tried_at >= REFRESH_FLOOR:
            await self._reload()
            key = _pick(self._keys or [], kid, algorithm)
        return key

    async def _reload(self) -> None:
        async with self._lock:
            started = self._clock()
            if started - self._tried_at < REFRESH_FLOOR and self._keys is not None:
                return  # another session reloaded while this one waited
            self._tried_at = started
            try:
                raw = await asyncio.to_thread(self._read)
                self._keys = _parse(raw)
                self._loaded_at = started
            except (OSError, ValueError, jwt.PyJWKError) as exc:
                if self._keys is None:
                    raise JwksUnavailable(f"JWKS could not be loaded: {exc}") from exc

    def _read(self) -> bytes:
        if not self._source.startswith("https://"):
            return Path(self._source).read_bytes()[: MAX_JWKS_OCTETS + 1]
        context = ssl.create_default_context(cafile=self._ca_file or None)
        request = urllib.request.Request(self._source, headers={"Accept": "application/json"})  # noqa: S310 - https only, checked by config
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context) as response:  # noqa: S310 - https only, checked by config
            body: bytes = response.read(MAX_JWKS_OCTETS + 1)
        return body


_Key = tuple[jwt.PyJWK, object]  # the key and the "alg" its JWK declares, if any


def _parse(raw: bytes) -> list[_Key]:
    if len(raw) > MAX_JWKS_OCTETS:
        raise ValueError("JWKS is larger than 1 MiB")
    document: Any = json.loads(raw)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('JWKS has no "keys" list')  # noqa: TRY004 - bad content, not a caller's type
    keys = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append((jwt.PyJWK(entry), entry.get("alg")))
        except jwt.PyJWTError:
            continue  # a key type this PyJWT cannot use; the others still work
    if not keys:
        raise ValueError("JWKS holds no usable signing key")
    return keys


def _pick(keys: list[_Key], kid: object, algorithm: str) -> jwt.PyJWK | None:
    for key, declared in keys:
        if (kid is None or key.key_id == kid) and declared in (None, algorithm):
            return key
    return None
