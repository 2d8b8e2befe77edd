"""V0008 end to end: under an Exchange profile the name check happens at PASS."""

from __future__ import annotations

import poplib

import pytest

from pop3_clients import TIMEOUT

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
