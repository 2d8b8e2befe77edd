"""The Exchange profiles on the wire: V0008 in full, no response codes, SecureLogin's CAPA."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.protocol.connection import ConnectionSettings, PasswordLogin, Pop3Connection
from popbox.protocol.profiles import PROFILES, on_wire
from popbox.protocol.replies import Err, Ok, RespCode
from popbox.protocol.testing import Responder, talk

if TYPE_CHECKING:
    from popbox.protocol.events import LoginType

EXCHANGE = sorted(name for name, profile in PROFILES.items() if profile.exchange)
LOGIN_TYPES: list[LoginType] = ["plaintext_login", "plaintext_authentication", "secure_login"]
MECHANISMS = (("NTLM", False), ("GSSAPI", False), ("PLAIN", True))
LOGON_FAILURE = b"-ERR Logon failure: unknown user name or bad password.\r\n"


def exchange_settings(
    profile: str, *, login_type: LoginType = "secure_login", tls: bool = True, size: int = 512
) -> ConnectionSettings:
    return ConnectionSettings(
        wire=PROFILES[profile],
        login_type=login_type,
        tls_active=tls,
        max_command_size=size,
        sasl_mechanisms=MECHANISMS,
    )


def greeted(settings: ConnectionSettings) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


@given(
    profile=st.sampled_from(EXCHANGE),
    login_type=st.sampled_from(LOGIN_TYPES),
    tls=st.booleans(),
    keyword=st.sampled_from([b"USER ", b"user\t", b"UsEr \t "]),  # separators: 2.1.1
    argument=st.binary(max_size=505).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
def test_no_exchange_profile_ever_answers_user_with_err_v0008(
    profile: str, login_type: LoginType, *, tls: bool, keyword: bytes, argument: bytes
) -> None:
    """V0008: "Microsoft Exchange Server does not return a negative status to the USER
    command because Microsoft Exchange does not verify whether the specified mailbox
    exists until the client issues the PASS command."  Whatever follows USER on a line
    the framing accepts (over-long names, extra arguments, control and 8-bit octets), in
    any login_type, with or without TLS, the answer is +OK."""
    line = keyword + argument + b"\r\n"
    conn = greeted(exchange_settings(profile, login_type=login_type, tls=tls, size=1024))
    exchange = talk(conn, line)
    assert exchange.output == b"+OK\r\n"
    assert exchange.events == []


@pytest.mark.parametrize("profile", EXCHANGE)
@pytest.mark.parametrize(
    "line",
    [
        b"USER " + b"n" * 505,  # a 512-octet command line (E0006, 2.1.2)
        b"USER alice extra",
        b"USER alice\x01",
        b"USER al\x00ice",
        b"USER \xff\xfe",
        b"USER",
    ],
)
def test_a_name_user_could_not_take_fails_at_pass_like_a_wrong_password_v0008(
    profile: str, line: bytes
) -> None:
    """V0008: the check happens at PASS.  PASS with alice's right password still fails,
    with the logon failure text a wrong password gets ([MailKit#391]), because the name
    is not a mailbox name; the session layer learns so from ``valid_name``."""
    conn = greeted(exchange_settings(profile))
    assert talk(conn, line + b"\r\n").output == b"+OK\r\n"
    exchange = talk(conn, b"PASS secret\r\n")
    assert isinstance(exchange.events[0], PasswordLogin)
    assert exchange.events[0].valid_name is False
    assert exchange.output == b""  # the answer waits for the session layer
    conn.login_failed(Err("authentication failed", RespCode.AUTH))
    assert b"".join(conn.data_to_send()) == LOGON_FAILURE
    responder = Responder(user=exchange.events[0].user)
    assert talk(conn, line + b"\r\nPASS secret\r\n", respond=responder).output == (
        b"+OK\r\n" + LOGON_FAILURE
    )


@pytest.mark.parametrize("profile", EXCHANGE)
def test_exchange_sends_no_response_codes_rfc2449_s8(profile: str) -> None:
    """RFC 2449 s8: response codes are for servers that list RESP-CODES; Exchange's CAPA
    lists none (MailKit 119, vmime 267), so its profiles send the text without a code."""
    wire = PROFILES[profile]
    assert on_wire(wire, Err("try later", RespCode.SYS_TEMP)) == Err("try later")
    assert on_wire(wire, Err("locked", RespCode.IN_USE)) == Err("locked")
    assert on_wire(wire, Ok("fine")) == Ok("fine")
    assert on_wire(PROFILES["modern"], Err("x", RespCode.AUTH)) == Err("x", RespCode.AUTH)


@pytest.mark.parametrize("profile", EXCHANGE)
def test_secure_login_takes_no_auth_before_tls_indy_192(profile: str) -> None:
    """IndySockets/Indy issue 192: Exchange under SecureLogin lists ``TOP UIDL STLS`` on a
    plain port, no SASL line; popbox refuses the AUTH that CAPA does not list, NTLM too."""
    conn = greeted(exchange_settings(profile, tls=False))
    exchange = talk(conn, b"AUTH NTLM\r\n")
    assert exchange.events == []
    assert exchange.output.startswith(b"-ERR ")
    assert talk(conn, b"AUTH\r\n").output == b"+OK supported mechanisms follow\r\n.\r\n"


@pytest.mark.parametrize("profile", EXCHANGE)
def test_plaintext_pass_is_refused_after_user_said_ok_v0010(profile: str) -> None:
    """V0010: "Microsoft Exchange returns a negative response if the mailbox exists, but
    the server does not permit plaintext password authentication."  USER said +OK
    (V0008), so the refusal comes at PASS, before any check of the password."""
    conn = greeted(exchange_settings(profile, tls=False))
    exchange = talk(conn, b"USER alice\r\nPASS secret\r\n")
    assert exchange.events == []
    assert exchange.output == (
        b"+OK\r\n-ERR USER/PASS is only allowed over TLS, issue STLS first\r\n"
    )
