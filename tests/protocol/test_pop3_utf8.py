"""UTF8 (RFC 6856 s2, s5) in the modern profile, byte in and byte out; the Exchange
profiles do not know it."""

from __future__ import annotations

import pytest

from popbox.protocol.connection import ConnectionSettings, PasswordLogin, Pop3Connection
from popbox.protocol.profiles import PROFILES
from popbox.protocol.testing import Responder, logged_in, message_info, talk

UTF8_ON = b"+OK UTF-8 mode enabled\r\n"
ASCII_MAIL = b"Subject: hi\r\n\r\nbody\r\n"
UTF8_MAIL = "Subject: grüße\r\n\r\nbody\r\n".encode()
EIGHT_BIT_BODY = "Subject: hi\r\n\r\ngrüße\r\n".encode()
TLS = ConnectionSettings(tls_active=True)


def greeted(settings: ConnectionSettings = TLS) -> Pop3Connection:
    conn = Pop3Connection(settings)
    conn.data_to_send()
    return conn


def mailbox(*wires: bytes) -> Responder:
    return Responder(messages=[(message_info(n, len(w)), w) for n, w in enumerate(wires, 1)])


def test_utf8_is_listed_with_user_where_user_pass_is_taken_rfc6856_s2_2():
    """RFC 6856 s2: "CAPA tag: UTF8 / Arguments with CAPA tag: USER"; s2.2: "If the USER
    argument is included with this capability, it indicates that the server accepts UTF-8
    usernames and passwords."  "Announced states: both"."""
    assert b"\r\nUTF8 USER\r\nLANG\r\n" in talk(greeted(), b"CAPA\r\n").output
    assert b"\r\nUTF8 USER\r\nLANG\r\n" in talk(logged_in([]), b"CAPA\r\n").output
    plain = greeted(ConnectionSettings(login_type="secure_login"))  # USER refused here
    assert b"\r\nUTF8\r\nLANG\r\n" in talk(plain, b"CAPA\r\n").output


def test_utf8_command_enables_utf8_mode_in_authorization_rfc6856_s2_1():
    """RFC 6856 s2.1: "The "UTF8" command enables UTF-8 mode.  The "UTF8" command has no
    parameters."  s2: "Commands valid in states: AUTHORIZATION"."""
    conn = greeted()
    assert talk(conn, b"UTF8\r\nutf8\r\n").output == UTF8_ON * 2
    assert talk(conn, b"UTF8 now\r\n").output == b"-ERR UTF8 takes no arguments\r\n"


def test_utf8_in_transaction_is_refused_rfc6856_s2():
    """RFC 6856 s2: "Commands valid in states: AUTHORIZATION"."""
    assert talk(logged_in([]), b"UTF8\r\n").output == (
        b"-ERR UTF8 is only allowed before login\r\n"
    )


def test_stls_after_utf8_is_refused_rfc6856_s2_1():
    """RFC 6856 s2.1: "Clients MUST NOT issue the "STLS" command [RFC2595] after issuing
    UTF8; servers MAY ... enforce this by rejecting with an -ERR response"."""
    conn = greeted(ConnectionSettings())
    assert talk(conn, b"UTF8\r\nSTLS\r\n").output == (
        UTF8_ON + b"-ERR STLS is not allowed after UTF8\r\n"
    )
    assert talk(greeted(ConnectionSettings()), b"STLS\r\n").output == (
        b"+OK begin TLS negotiation\r\n"
    )


@pytest.mark.parametrize("utf8_first", [b"", b"UTF8\r\n"])
def test_utf8_names_and_passwords_are_taken_before_and_after_utf8_rfc6856_s2_2(utf8_first):
    """RFC 6856 s2.2: "If the server includes the USER argument in the UTF8 capability
    response, the client MAY use UTF-8 characters with a "USER", "PASS", or "APOP"
    command; the client MAY do so before issuing the "UTF8" command."  Servers "SHOULD
    apply SASLprep [RFC4013] ... to the arguments of the "USER" and "PASS" commands" as a
    query string: the compatibility ligature becomes "fi" (NFKC); the password is
    checked, and passed on as sent."""
    conn = greeted()
    line = "USER Zoë\ufb01\r\nPASS grüße\u00a0x\r\n".encode()
    exchange = talk(conn, utf8_first + line)
    assert exchange.output == (UTF8_ON if utf8_first else b"") + b"+OK send PASS\r\n"
    assert exchange.events == [PasswordLogin("Zoëfi", "grüße\u00a0x")]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        # RFC 3454 s6: right-to-left text must start and end with such a character.
        (
            "USER \u0627\u0031",
            (
                "-ERR USER mailbox name is not a valid name "
                "(right-to-left text must start and end with such a character)"
            ),
        ),
        ("USER \u200balice\u2028", "-ERR USER mailbox name is not a valid name"),
    ],
)
def test_a_name_saslprep_prohibits_is_refused_rfc6856_s2_2(line, reply):
    """RFC 6856 s2.2: "When applying SASLprep, servers MUST reject UTF-8 usernames or
    passwords that contain a UTF-8 character listed in Section 2.3 of SASLprep"."""
    exchange = talk(greeted(), line.encode() + b"\r\n")
    assert exchange.output == reply.encode() + b"\r\n"
    assert exchange.events == []


@pytest.mark.parametrize(
    ("password", "reply"),
    [
        (b"gr\xfc\xdfe", b"-ERR PASS password is not valid UTF-8\r\n"),
        ("a\u202eb".encode(), b"-ERR PASS password is not valid (prohibited character U+202E)\r\n"),
        (b"tab\there", b"-ERR PASS password is not valid (prohibited character U+0009)\r\n"),
    ],
)
def test_a_password_that_is_not_utf8_or_prohibited_is_refused_rfc6856_s2_2(password, reply):
    """RFC 6856 s2.2: "The server MUST reject UTF-8 usernames or passwords that fail to
    comply with the formal syntax in UTF-8" and those with a character SASLprep's s2.3
    prohibits (a control character, a bidi override).  Nothing is checked against the
    store: the reply says what is wrong with the password's form, not the password."""
    exchange = talk(greeted(), b"USER alice\r\nPASS " + password + b"\r\n")
    assert exchange.output == b"+OK send PASS\r\n" + reply
    assert exchange.events == []


def test_a_message_with_utf8_headers_needs_utf8_mode_rfc6856_s2_1_s5():
    """RFC 6856 s2.1: "If a client requests a UTF-8 message when UTF-8 mode is not
    enabled, the server MUST either send the client a surrogate message ... or fail the
    request with an -ERR response"; s5: the "UTF8" response code, "Valid for commands:
    LIST, TOP, RETR".  The message is not marked retrieved; the others are sent as is."""
    responder = mailbox(UTF8_MAIL, EIGHT_BIT_BODY, ASCII_MAIL)
    script = b"USER alice\r\nPASS secret\r\nRETR 1\r\nTOP 1 0\r\nRETR 2\r\nQUIT\r\n"
    exchange = talk(greeted(), script, respond=responder)
    refused = (
        b"-ERR [UTF8] message 1 has UTF-8 headers: send UTF8 before logging in to retrieve it\r\n"
    )
    assert exchange.output == (
        b"+OK send PASS\r\n+OK logged in, 3 messages (%d octets)\r\n"
        % len(UTF8_MAIL + EIGHT_BIT_BODY + ASCII_MAIL)
        + refused * 2
        + b"+OK %d octets\r\n" % len(EIGHT_BIT_BODY)  # an 8bit body (RFC 6152) is no UTF-8 message
        + EIGHT_BIT_BODY
        + b".\r\n+OK signing off, 0 messages deleted\r\n"
    )
    assert responder.updates[0].retrieved == (2,)


LATIN1_HEADER_MAIL = b"Subject: caf\xe9 cr\xe8me\r\n\r\nbody\r\n"


def test_raw_8bit_headers_that_are_not_utf8_are_sent_as_is_rfc6856_s2_1():
    """Latin-1 octets in a header (mail from before MIME header encoding) are no UTF-8
    message: UTF-8 mode would not make them readable, so "[UTF8]" ("the client MAY
    reissue the command after entering UTF-8 mode", s5) would be untrue and the message
    unreachable.  It is sent as stored, as POP3 servers always have."""
    script = b"USER alice\r\nPASS secret\r\nRETR 1\r\n"
    exchange = talk(greeted(), script, respond=mailbox(LATIN1_HEADER_MAIL))
    assert exchange.output.endswith(
        b"+OK %d octets\r\n" % len(LATIN1_HEADER_MAIL) + LATIN1_HEADER_MAIL + b".\r\n"
    )


def test_in_utf8_mode_a_utf8_message_is_sent_as_is_rfc6856_s2_1():
    """RFC 6856 s2.1: "In UTF-8 mode, if the character encoding format of maildrops is
    UTF-8 or ASCII, the messages are sent to the client as is"."""
    script = b"UTF8\r\nUSER alice\r\nPASS secret\r\nRETR 1\r\n"
    exchange = talk(greeted(), script, respond=mailbox(UTF8_MAIL))
    assert exchange.output.endswith(b"+OK %d octets\r\n" % len(UTF8_MAIL) + UTF8_MAIL + b".\r\n")


def test_a_language_range_that_is_not_one_is_refused_without_echo_rfc6856_s2_1():
    """RFC 4647 s2.1: a basic language range is ALPHA and alphanum subtags; and outside
    UTF-8 mode "character strings outside the ASCII repertoire MUST NOT be sent to the
    client as is" (RFC 6856 s2.1), so the reply does not repeat it."""
    assert talk(greeted(), "LANG dé\r\n".encode()).output == b"-ERR invalid language range\r\n"


@pytest.mark.parametrize(
    "profile", ["exchange2007", "exchange2010", "exchange2013", "exchange-online"]
)
def test_exchange_profiles_know_no_utf8_mailkit_119(profile):
    """Exchange's CAPA lists no UTF8 (MailKit issue 119, vmime issue 267): its profiles
    treat UTF8 as any unknown command, keep a Latin-1 password for the check (V0011), and
    send every message as stored."""
    settings = ConnectionSettings(wire=PROFILES[profile], tls_active=True)
    conn = greeted(settings)
    assert talk(conn, b"UTF8\r\n").output == b"-ERR unknown command\r\n"
    assert b"UTF8" not in talk(conn, b"CAPA\r\n").output
    exchange = talk(conn, b"USER alice\r\nPASS gr\xfc\xdfe\r\n")
    assert exchange.events == [PasswordLogin("alice", "gr\xfc\xdfe")]
    conn = greeted(settings)
    script = b"USER alice\r\nPASS secret\r\nRETR 1\r\n"
    exchange = talk(conn, script, respond=mailbox(UTF8_MAIL))
    assert exchange.output.endswith(UTF8_MAIL + b".\r\n")
