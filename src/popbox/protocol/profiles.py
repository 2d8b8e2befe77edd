"""What each compatibility profile looks like on the wire: greeting, texts, response codes.

Theory of operation: a ``WireProfile`` travels in ``ConnectionSettings``; the connection
asks it for the few texts that differ and passes every status line through ``on_wire``.
The modern profile keeps popbox's own texts and RFC 2449/3206 response codes.  The
Exchange profiles reproduce what public transcripts of Exchange's POP3 service show;
each text below names its source.  Where no public transcript shows what Exchange
sends, popbox keeps its own text rather than invent one, and the comment says so.

Sources (the README's "Compatibility profiles" section lists them too):
- [MailKit#119] jstedfast/MailKit issue 119, on-premises Exchange (release not stated):
  greeting, bare "+OK" CAPA status, CAPA ``TOP UIDL SASL ... USER STLS``, STLS reply.
- [MailKit#391] jstedfast/MailKit issue 391 (Exchange 2003): the logon failure and the
  wrong-state texts.  [rust-pop3#17] mattnenterprise/rust-pop3 issue 17: the same
  logon failure text from a "Microsoft Exchange POP3" server (release not stated).
- [r00tedvw] wiki.r00tedvw.com "Mail Server CLI/POP", a telnet session with Exchange
  2010: bare "+OK" to USER, "+OK User successfully logged on.", the signing-off text.
- [vmime#267] kisli/vmime issue 267 and [oauth2-proxy#162] simonrob/email-oauth2-proxy
  issue 162, Exchange Online: the greeting's bracketed base64 UTF-16LE host name, and
  "-ERR Command is not valid in this state." to STLS on a TLS connection.
- [Set-PopSettings] MicrosoftDocs office-docs-powershell Set-PopSettings.md: the default
  banner "The Microsoft Exchange POP3 service is ready."
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import ClassVar

from popbox.protocol.replies import Err, Ok, RespCode, counted

__all__ = [
    "EXCHANGE_LOGGED_IN",
    "EXCHANGE_LOGON_FAILURE",
    "EXCHANGE_STLS",
    "EXCHANGE_WRONG_STATE",
    "MODERN",
    "PROFILES",
    "Texts",
    "WireProfile",
    "greeting",
    "on_wire",
    "texts_of",
]

# [MailKit#391], [rust-pop3#17]: a wrong password and an unknown user alike.
EXCHANGE_LOGON_FAILURE = "Logon failure: unknown user name or bad password."
# [MailKit#391]: STAT before login; [oauth2-proxy#162]: STLS on a TLS connection.
EXCHANGE_WRONG_STATE = "Command is not valid in this state."
EXCHANGE_STLS = "Begin TLS negotiation."  # [MailKit#119]
EXCHANGE_LOGGED_IN = "User successfully logged on."  # [r00tedvw], Exchange 2010


@dataclass(frozen=True, slots=True)
class WireProfile:
    """The wire face of one ``compat`` profile."""

    name: str
    # Exchange's CAPA list and texts, no response codes, and USER never answered -ERR.
    exchange: bool = False
    # Exchange Online appends " [base64 of the host name in UTF-16LE]" to the greeting.
    host_in_greeting: bool = False
    signing_off: str = "signing off"  # QUIT's +OK text


MODERN = WireProfile("modern")

# The signing-off text is shown by [r00tedvw] for Exchange 2010 only; the 2007 text
# follows its pattern, and popbox guesses that 2013 and later (and Exchange Online,
# which runs the 2013+ code) dropped the release number, as their greeting carries none.
PROFILES: dict[str, WireProfile] = {
    "modern": MODERN,
    "rfc1939": MODERN,
    "exchange2007": WireProfile(
        "exchange2007",
        exchange=True,
        signing_off="Microsoft Exchange Server 2007 POP3 server signing off.",
    ),
    "exchange2010": WireProfile(
        "exchange2010",
        exchange=True,
        signing_off="Microsoft Exchange Server 2010 POP3 server signing off.",
    ),
    "exchange2013": WireProfile(
        "exchange2013",
        exchange=True,
        signing_off="Microsoft Exchange Server POP3 server signing off.",
    ),
    # [vmime#267], [oauth2-proxy#162]: the only captures with the bracketed host name are
    # Exchange Online's; no public on-premises capture shows one, so on-premises sends none.
    "exchange-online": WireProfile(
        "exchange-online",
        exchange=True,
        host_in_greeting=True,
        signing_off="Microsoft Exchange Server POP3 server signing off.",
    ),
}


# What a store failure is answered with, by the response code the I/O layer chose.
_STORE_FAILED = {
    RespCode.SYS_TEMP: "the mail store is not available, try again later",
    RespCode.SYS_PERM: "the mail store cannot do this until an administrator acts",
    RespCode.IN_USE: "maildrop is locked by another session, try again later",
}


class Texts:
    """The status-line texts a connection writes itself, per profile.

    Only the AUTHORIZATION texts, CAPA's and QUIT's differ between profiles; the texts of
    failures, closing and timeouts are popbox's own in every profile (no public
    transcript shows Exchange's).
    """

    __slots__ = ("_profile",)

    def __init__(self, profile: WireProfile) -> None:
        self._profile = profile

    @property
    def exchange(self) -> bool:
        return self._profile.exchange

    @property
    def capa(self) -> str:
        # Exchange's CAPA status line is a bare "+OK": [MailKit#119], [vmime#267].
        return "" if self.exchange else "capability list follows"

    @property
    def user(self) -> str:
        return "" if self.exchange else "send PASS"  # Exchange: bare "+OK" [r00tedvw]

    @property
    def stls(self) -> str:
        return EXCHANGE_STLS if self.exchange else "begin TLS negotiation"

    @property
    def already_tls(self) -> str:
        return EXCHANGE_WRONG_STATE if self.exchange else "already using TLS"

    @property
    def no_tls(self) -> str:
        # Exchange without a certificate: not shown anywhere; popbox guesses the
        # wrong-state text it gives STLS on a TLS connection [oauth2-proxy#162].
        return EXCHANGE_WRONG_STATE if self.exchange else "TLS is not available on this port"

    @property
    def pass_without_user(self) -> str:
        # Exchange: not shown; popbox guesses its wrong-state text [MailKit#391].
        return EXCHANGE_WRONG_STATE if self.exchange else "PASS must follow a successful USER"

    @property
    def plaintext_refused(self) -> str:
        # V0010.  Exchange's text for a refused plaintext login is not shown anywhere:
        # popbox's own text, sent by PASS in the Exchange profiles (USER is always +OK).
        return "USER/PASS is only allowed over TLS, issue STLS first"

    def not_allowed(self, verb: str, before_login: bool) -> str:  # noqa: FBT001 - internal
        """A command the current state does not accept (C0002, C0003)."""
        if self.exchange:
            return EXCHANGE_WRONG_STATE  # [MailKit#391]: STAT before login
        if before_login:
            return f"{verb} is not allowed before login, log in first"
        return f"{verb} is only allowed before login"

    # C0005: the server may close after repeated failures.
    too_many_failures: ClassVar[str] = "too many failed logins, closing connection"
    too_many_bad_commands: ClassVar[str] = "too many invalid commands, closing connection"
    shutting_down: ClassVar[str] = "server shutting down, try again later"
    # The outcome of UPDATE's commit could not be learnt: say so, never a guess.
    update_unknown: ClassVar[str] = (
        "could not learn whether messages marked as deleted were removed, log in again to see"
    )

    def store_failed(self, code: RespCode) -> str:
        return _STORE_FAILED.get(code, _STORE_FAILED[RespCode.SYS_TEMP])

    def update_failed(self, code: RespCode) -> str:
        """UPDATE removed nothing (V0006); with SYS/PERM trying again will not help."""
        retry = "" if code is RespCode.SYS_PERM else ", try again"
        return f"messages marked as deleted were not removed{retry}"

    def timed_out(self, seconds: float) -> str:  # V0003
        return f"connection closed after {counted(seconds, 'second')} of inactivity"

    def logged_in(self, count: int, size: int) -> str:
        if self.exchange:
            return EXCHANGE_LOGGED_IN
        return f"logged in, {counted(count, 'message')} ({size} octets)"

    def signed_off(self, deleted: int | None) -> str:
        """QUIT's text; ``deleted`` is None for a QUIT before login (no UPDATE)."""
        if self.exchange or deleted is None:
            return self._profile.signing_off
        return f"signing off, {counted(deleted, 'message')} deleted"


def texts_of(profile: WireProfile) -> Texts:
    return Texts(profile)


def greeting(profile: WireProfile, banner: str, host: str) -> str:
    """The text of the greeting's +OK: the banner, plus the encoded host where sent."""
    if not profile.host_in_greeting or not host:
        return banner
    encoded = base64.b64encode(host.encode("utf-16-le")).decode("ascii")
    return f"{banner} [{encoded}]"


def on_wire(profile: WireProfile, reply: Ok | Err) -> Ok | Err:
    """``reply`` as this profile sends it.

    The Exchange profiles do not list RESP-CODES in CAPA, so a bracketed code would be
    mere text to a client (RFC 2449 s8): they send none.  A refused login, which popbox
    marks [AUTH], becomes Exchange's logon failure text.
    """
    if not profile.exchange or isinstance(reply, Ok) or reply.code is None:
        return reply
    if reply.code is RespCode.AUTH:
        return Err(EXCHANGE_LOGON_FAILURE)
    return Err(reply.text)
