"""SASL framing for POP3 AUTH (RFC 5034): pure decisions the connection writes out.

The connection owns the SASL state; this module only says what an AUTH line or a
continuation line means: the event to raise, the listing or the ``-ERR`` to send.
Mechanisms themselves live in ``popbox.auth`` behind the I/O layer.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from popbox.protocol.events import SaslStart
from popbox.protocol.policy import allowed_mechanisms
from popbox.protocol.replies import Err, Ok, multiline

if TYPE_CHECKING:
    from popbox.protocol.events import ConnectionSettings

__all__ = ["auth_request", "challenge_line", "decode_base64", "response"]


def auth_request(
    settings: ConnectionSettings, mechanism: str | None, initial: str | None, *, tls_active: bool
) -> SaslStart | Err | bytes:
    """An AUTH line: the exchange to start, the refusal, or (bare AUTH) the listing to send."""
    allowed = allowed_mechanisms(settings, tls_active=tls_active)
    if mechanism is None:  # [MS-OXPOP3]: bare AUTH lists the mechanisms
        return multiline(Ok("supported mechanisms follow"), allowed)
    if mechanism not in allowed:
        offered = {name for name, _ in settings.sasl_mechanisms}
        if mechanism in offered:
            return Err(f"{mechanism} is only allowed over TLS, issue STLS first")
        return Err(f"unsupported authentication mechanism {mechanism}")
    decoded: bytes | None = None
    if initial is not None:
        decoded = decode_base64(initial)
        if decoded is None:
            return Err("initial response is not valid base64")
    return SaslStart(mechanism, decoded)


def response(line: bytes) -> bytes | Err:
    """A continuation line: the decoded client response, or the ``-ERR`` that cancels."""
    if line == b"*":
        return Err("authentication cancelled")  # RFC 5034 s4
    decoded = decode_base64(line.decode("latin-1"))
    if decoded is None:
        return Err("SASL response is not valid base64, authentication cancelled")
    return decoded


def challenge_line(challenge: bytes) -> bytes:
    """A server challenge as sent: "+ ", base64, CRLF (RFC 5034 s4)."""
    return b"+ " + base64.b64encode(challenge) + b"\r\n"


def decode_base64(text: str) -> bytes | None:
    """Strict base64 (RFC 5034 s4: reject characters outside the alphabet); "=" is empty."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
