"""API tokens: made, shown once, stored as a digest, checked on every request.

A token reads ``popbox_<id>_<secret>``: the id names it in ``popbox admin token list``
and in audit lines, the secret is 32 random bytes.  The store keeps the SHA-256 of the
whole token: the secret has 256 bits of entropy, so a fast hash is enough (a password
hash's cost is for guessable secrets), and a stolen database lets nobody in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

from popbox.store.admin_records import TokenRecord

if TYPE_CHECKING:
    from popbox.store.admin_records import Scope
    from popbox.store.base import MailStore

__all__ = ["SCOPES", "authenticate", "digest", "issue", "parse_duration"]

SCOPES: tuple[Scope, ...] = ("read", "admin")
_TOKEN = re.compile(r"popbox_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def issue(
    scope: Scope, *, now: float, lifetime: float | None, note: str = ""
) -> tuple[str, TokenRecord]:
    """A new token and the record to store; the token itself is never stored."""
    token_id = secrets.token_hex(4)
    token = f"popbox_{token_id}_{secrets.token_urlsafe(32)}"
    expires = None if lifetime is None else now + lifetime
    return token, TokenRecord(token_id, digest(token), scope, now, expires, note)


async def authenticate(store: MailStore, token: str, *, now: float) -> TokenRecord | None:
    """The stored token ``token`` is, unless it is malformed, unknown, revoked or expired."""
    if _TOKEN.fullmatch(token) is None:
        return None
    record = await store.admin.token_by_digest(digest(token))
    if record is None or (record.expires_at is not None and record.expires_at <= now):
        return None
    return record


def parse_duration(text: str) -> float:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"3600s"`` → seconds (more than 0)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90d, 12h or 30m")
    return float(int(match[1]) * _UNITS[match[2]])
