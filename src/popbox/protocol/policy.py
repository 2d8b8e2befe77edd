"""Who may send what where (V0010), and the CAPA list built from the same rules.

CAPA (RFC 2449 s5) is computed from the settings that implement each capability, so a
capability is announced exactly when the connection would accept it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol.replies import Ok, multiline

if TYPE_CHECKING:
    from popbox.protocol.events import ConnectionSettings

__all__ = ["Capabilities", "allowed_mechanisms", "capability_lines", "plaintext_allowed"]


def plaintext_allowed(settings: ConnectionSettings, *, tls_active: bool, sasl: bool) -> bool:
    """V0010: may a password cross this connection as it is?"""
    if tls_active or settings.login_type == "plaintext_login":
        return True
    return settings.login_type == "plaintext_authentication" and sasl


def allowed_mechanisms(settings: ConnectionSettings, *, tls_active: bool) -> list[str]:
    """The SASL mechanisms this connection accepts now, in the configured order.

    Exchange under SecureLogin takes no AUTH at all before TLS, NTLM and GSSAPI
    included: its CAPA then lists no SASL line (IndySockets/Indy issue 192, Exchange
    Online on port 110: ``TOP UIDL STLS``), and popbox refuses what CAPA does not list.
    """
    if settings.wire.exchange and not tls_active and settings.login_type == "secure_login":
        return []
    plaintext_ok = plaintext_allowed(settings, tls_active=tls_active, sasl=True)
    return [name for name, plaintext in settings.sasl_mechanisms if plaintext_ok or not plaintext]


def capability_lines(
    settings: ConnectionSettings, *, tls_active: bool, before_login: bool
) -> list[str]:
    """The CAPA listing (DESIGN.md 2.2.13), without status line and terminator."""
    if settings.wire.exchange:
        return _exchange_lines(settings, tls_active=tls_active, before_login=before_login)
    lines = ["TOP", "UIDL"]
    # USER and SASL are announced in both states (RFC 2449 s5, RFC 5034 s3).
    user = plaintext_allowed(settings, tls_active=tls_active, sasl=False)
    if user:
        lines.append("USER")
    if mechanisms := allowed_mechanisms(settings, tls_active=tls_active):
        lines.append("SASL " + " ".join(mechanisms))
    lines += ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    lines += [f"EXPIRE {settings.expire}", "LOGIN-DELAY 0"]
    # RFC 6856: UTF8 in both states (s2), with USER where USER/PASS are taken (s2.2:
    # UTF-8 names and passwords are accepted); LANG in both states (s3.1).
    lines += ["UTF8 USER" if user else "UTF8", "LANG"]
    if before_login and not tls_active and settings.stls_available:
        lines.append("STLS")
    lines.append(f"IMPLEMENTATION {settings.implementation}")
    return lines


def _exchange_lines(
    settings: ConnectionSettings, *, tls_active: bool, before_login: bool
) -> list[str]:
    """Exchange's CAPA list: ``TOP``, ``UIDL``, SASL, ``USER``, ``STLS``, in that order.

    jstedfast/MailKit issue 119 (on-premises): ``TOP UIDL SASL GSSAPI PLAIN USER STLS``;
    kisli/vmime issue 267 (Exchange Online, port 995): ``TOP UIDL SASL PLAIN XOAUTH2 USER``;
    IndySockets/Indy issue 192 (Exchange Online, port 110, SecureLogin): ``TOP UIDL STLS``.
    No RESP-CODES, PIPELINING, EXPIRE, LOGIN-DELAY or IMPLEMENTATION: none of them shows.
    Whether Exchange lists STLS after login is not shown; popbox does not (RFC 2595 s4:
    STLS is an AUTHORIZATION command).
    """
    lines = ["TOP", "UIDL"]
    if mechanisms := allowed_mechanisms(settings, tls_active=tls_active):
        lines.append("SASL " + " ".join(mechanisms))
    if plaintext_allowed(settings, tls_active=tls_active, sasl=False):
        lines.append("USER")
    if before_login and not tls_active and settings.stls_available:
        lines.append("STLS")
    return lines


class Capabilities:
    """One connection's CAPA replies, built once per (before login, TLS) and kept: some
    clients repeat CAPA before every command."""

    def __init__(self, settings: ConnectionSettings, status: str) -> None:
        self._settings = settings
        self._status = status
        self._replies: dict[tuple[bool, bool], bytes] = {}

    def reply(self, *, before_login: bool, tls_active: bool) -> bytes:
        key = (before_login, tls_active)
        reply = self._replies.get(key)
        if reply is None:
            settings = self._settings
            lines = capability_lines(settings, tls_active=tls_active, before_login=before_login)
            reply = self._replies[key] = multiline(Ok(self._status), lines)
        return reply
