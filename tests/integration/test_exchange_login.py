"""V0008 end to end: under an Exchange profile the name check happens at PASS."""

from __future__ import annotations

import poplib

import pytest

from pop3_clients import TIMEOUT
from raw_pop3 import Client

LONG_NAME = "n" * 300  # more than the 255 octets a USER name may have
PASSWORD = "long name secret"
LOGON_FAILURE = b"-ERR Logon failure: unknown user name or bad password."


def session(server) -> poplib.POP3_SSL:
    return poplib.POP3_SSL(
        server.host, server.tls_port, context=server.tls.client_context(), timeout=TIMEOUT
    )


def test_pass_refuses_a_name_user_could_not_take_even_if_stored_v0008(start_pop3_server):
    """V0008: Exchange "does not verify whether the specified mailbox exists until the
    client issues the PASS command".  USER takes a 300-octet name with +OK; PASS then
    fails as a wrong password does, even though a mailbox of that name exists and the
    password is its own: the name is checked at PASS, not looked up as if valid."""
    server = start_pop3_server(sections={"compat": "exchange2013"})
    server.add_users({LONG_NAME: PASSWORD})
    client = session(server)
    try:
        assert client.user(LONG_NAME) == b"+OK"
        with pytest.raises(poplib.error_proto) as failure:
            client.pass_(PASSWORD)
        assert failure.value.args[0] == LOGON_FAILURE
    finally:
        client.quit()


def test_modern_refuses_the_same_name_at_user_v0001(start_pop3_server):
    """V0001: the modern profile says at once why USER cannot take the name."""
    server = start_pop3_server()
    client = session(server)
    try:
        with pytest.raises(poplib.error_proto) as failure:
            client.user(LONG_NAME)
        assert failure.value.args[0] == b"-ERR USER mailbox name is not a valid name"
    finally:
        client.quit()


@pytest.mark.parametrize("compat", ["exchange2007", "exchange2010", "exchange2013"])
def test_a_served_exchange_profile_speaks_its_transcript_on_port_110_indy_192(
    start_pop3_server, compat
):
    """The listener hands the profile to every connection: greeting, SecureLogin's CAPA
    (IndySockets/Indy issue 192: ``TOP UIDL STLS``), USER's bare +OK and the signing-off
    text reach a real socket byte for byte, as tests/protocol/transcripts/ has them."""
    server = start_pop3_server(sections={"compat": compat})
    release = {"exchange2007": b"2007 ", "exchange2010": b"2010 "}.get(compat, b"")
    with Client.connect(server) as client:
        client.send(b"CAPA\r\nUSER alice\r\nQUIT\r\n")
        assert client.read_to_eof() == (
            b"+OK The Microsoft Exchange POP3 service is ready.\r\n"
            b"+OK\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n"
            b"+OK\r\n"
            b"+OK Microsoft Exchange Server " + release + b"POP3 server signing off.\r\n"
        )
