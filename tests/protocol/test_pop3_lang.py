"""LANG (RFC 6856 s3) in the modern profile; the Exchange profiles do not know it."""

from __future__ import annotations

import pytest

from popbox.protocol.connection import ConnectionSettings, Pop3Connection
from popbox.protocol.profiles import PROFILES
from popbox.protocol.testing import logged_in, talk

LISTING = (
    b"+OK language listing follows\r\nen English\r\ni-default Default language (English)\r\n.\r\n"
)


def greeted(settings: ConnectionSettings | None = None) -> Pop3Connection:
    conn = Pop3Connection(settings or ConnectionSettings())
    conn.data_to_send()
    return conn


def test_lang_without_argument_lists_en_and_i_default_rfc6856_s3_2():
    """RFC 6856 s3.2: "If no argument is given and the POP3 server issues a positive
    response ... for each language tag the server supports, the POP3 server responds with
    a line for that language" (tag, space, the language's name in itself)."""
    assert talk(greeted(), b"LANG\r\n").output == LISTING


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"LANG en", b"+OK en language changed\r\n"),
        (b"LANG EN-GB", b"+OK en language changed\r\n"),  # RFC 4647 s3.4 lookup
        (b"LANG i-default", b"+OK i-default language changed\r\n"),
        (b"LANG *", b"+OK en language changed\r\n"),
        (b"LANG MUL", b"-ERR invalid language MUL\r\n"),
        (b"LANG en fr", b"-ERR LANG takes at most one language range\r\n"),
    ],
)
def test_lang_selects_a_language_or_refuses_rfc6856_s3_2(line, reply):
    """RFC 6856 s3.2: "If the command succeeds, the server returns a +OK response followed
    by a single space, the exact language tag selected, and another space"; "If the
    command fails, the server returns an -ERR response"; "*" asks for the server's
    preferred language."""
    assert talk(greeted(), line + b"\r\n").output == reply


def test_lang_is_valid_in_transaction_too_rfc6856_s3_1():
    """RFC 6856 s3.1: "Commands valid in states: AUTHORIZATION, TRANSACTION"."""
    conn = logged_in([])
    assert talk(conn, b"LANG\r\nLANG en\r\n").output == LISTING + b"+OK en language changed\r\n"


def test_capa_lists_lang_in_the_modern_profile_rfc6856_s3_1():
    """RFC 6856 s3.1: "CAPA tag: LANG"."""
    assert b"\r\nLANG\r\n" in talk(greeted(), b"CAPA\r\n").output


@pytest.mark.parametrize("profile", ["exchange2007", "exchange2013", "exchange-online"])
def test_exchange_profiles_answer_lang_as_unknown_mailkit_119(profile):
    """Exchange's CAPA lists no LANG (MailKit issue 119, vmime issue 267), so its
    profiles treat LANG as any command they do not know."""
    conn = greeted(ConnectionSettings(wire=PROFILES[profile]))
    assert talk(conn, b"LANG\r\n").output == b"-ERR unknown command\r\n"
    assert b"LANG" not in talk(conn, b"CAPA\r\n").output
