"""Expected reply lines of the protocol core, byte for byte (compare aiosmtpd's statuscodes).

Fixed lines are constants; lines that carry a number or a name are functions.  Import as
``import pop3_replies as R``.
"""

from __future__ import annotations

CRLF = b"\r\n"
TERMINATOR = b".\r\n"

# -- greeting, session end ------------------------------------------------------------
GREETING = b"+OK popbox POP3 server ready\r\n"
OK = b"+OK\r\n"
OK_SIGNING_OFF = b"+OK signing off\r\n"
ERR_TOO_MANY_BAD_COMMANDS = b"-ERR too many invalid commands, closing connection\r\n"
ERR_TOO_MANY_FAILED_LOGINS = b"-ERR too many failed logins, closing connection\r\n"
ERR_SHUTDOWN = b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"
ERR_UPDATE_FAILED = b"-ERR [SYS/TEMP] messages marked as deleted were not removed, try again\r\n"
ERR_STORE_UNAVAILABLE = b"-ERR [SYS/TEMP] the mail store is not available, try again later\r\n"

# -- framing and parsing ----------------------------------------------------------------
ERR_EMPTY_LINE = b"-ERR empty command line\r\n"
ERR_NUL = b"-ERR command line contains a NUL byte\r\n"
ERR_UNKNOWN_COMMAND = b"-ERR unknown command\r\n"
ERR_PASS_NEEDS_PASSWORD = b"-ERR PASS needs a password\r\n"
ERR_USER_ARITY = b"-ERR USER needs exactly one mailbox name\r\n"
ERR_USER_BAD_NAME = b"-ERR USER mailbox name is not a valid name\r\n"
ERR_TOP_ARITY = b"-ERR TOP needs a message number and a number of lines\r\n"
ERR_AUTH_ARITY = b"-ERR AUTH takes a mechanism and at most one initial response\r\n"
ERR_AUTH_BAD_MECHANISM = b"-ERR AUTH mechanism name is not valid\r\n"

# -- AUTHORIZATION ----------------------------------------------------------------------
OK_SEND_PASS = b"+OK send PASS\r\n"
ERR_USER_NEEDS_TLS = b"-ERR USER/PASS is only allowed over TLS, issue STLS first\r\n"
ERR_PASS_WITHOUT_USER = b"-ERR PASS must follow a successful USER\r\n"
# popbox.protocol.testing.Responder's refusal:
ERR_AUTH_FAILED = b"-ERR [AUTH] authentication failed\r\n"
OK_BEGIN_TLS = b"+OK begin TLS negotiation\r\n"
ERR_ALREADY_TLS = b"-ERR already using TLS\r\n"
ERR_NO_TLS_HERE = b"-ERR TLS is not available on this port\r\n"
OK_CAPA = b"+OK capability list follows\r\n"

# -- SASL (RFC 5034) --------------------------------------------------------------------
OK_MECHANISMS = b"+OK supported mechanisms follow\r\n"
EMPTY_CHALLENGE = b"+ \r\n"
ERR_INITIAL_NOT_BASE64 = b"-ERR initial response is not valid base64\r\n"
ERR_SASL_CANCELLED = b"-ERR authentication cancelled\r\n"
ERR_SASL_NOT_BASE64 = b"-ERR SASL response is not valid base64, authentication cancelled\r\n"

# -- TRANSACTION ------------------------------------------------------------------------
OK_SCAN_LISTING = b"+OK scan listing follows\r\n"
OK_UIDL_LISTING = b"+OK unique-id listing follows\r\n"
OK_TOP = b"+OK top of message follows\r\n"


def counted(count: float | str, noun: str) -> str:
    """English count as the server writes it: "1 message", "2 messages"."""
    return f"{count} {noun}" + ("" if str(count) == "1" else "s")


def err(text: str) -> bytes:
    return b"-ERR " + text.encode() + CRLF


def line_too_long(limit: int) -> bytes:
    return err(f"line too long: the limit is {limit} octets including CRLF")


def not_before_login(verb: str) -> bytes:
    return err(f"{verb} is not allowed before login, log in first")


def only_before_login(verb: str) -> bytes:
    return err(f"{verb} is only allowed before login")


def takes_no_arguments(verb: str) -> bytes:
    return err(f"{verb} takes no arguments")


def not_utf8(verb: str) -> bytes:
    return err(f"{verb} arguments are not valid UTF-8")


def single_space_only(verb: str) -> bytes:
    return err(f"{verb} arguments must be separated by a single space")


def at_most_one_number(verb: str) -> bytes:
    return err(f"{verb} takes at most one message number")


def exactly_one_number(verb: str) -> bytes:
    return err(f"{verb} needs exactly one message number")


def not_decimal(verb: str, what: str = "message number") -> bytes:
    return err(f"{verb} {what} must be a decimal number")


def too_large(verb: str, what: str = "message number") -> bytes:
    return err(f"{verb} {what} is too large")


def below_minimum(verb: str, minimum: int = 1, what: str = "message number") -> bytes:
    return err(f"{verb} {what} must be {minimum} or greater")


def logged_in(count: int, size: int) -> bytes:
    return f"+OK logged in, {counted(count, 'message')} ({size} octets)\r\n".encode()


def mechanism_needs_tls(mechanism: str) -> bytes:
    return err(f"{mechanism} is only allowed over TLS, issue STLS first")


def unsupported_mechanism(mechanism: str) -> bytes:
    return err(f"unsupported authentication mechanism {mechanism}")


def challenge(b64: bytes) -> bytes:
    return b"+ " + b64 + CRLF


def stat(count: int, size: int) -> bytes:
    return f"+OK {count} {size}\r\n".encode()


def scan(msg: int, size: int) -> bytes:
    return f"+OK {msg} {size}\r\n".encode()


def unique_id(msg: int, uidl: str) -> bytes:
    return f"+OK {msg} {uidl}\r\n".encode()


def no_such_message(msg: int, count: int) -> bytes:
    return err(f"no message {msg}: the maildrop has {count} message{'s' * (count != 1)}")


def marked_deleted(msg: int) -> bytes:
    return err(f"message {msg} is marked as deleted")


def deleted(msg: int) -> bytes:
    return f"+OK message {msg} deleted\r\n".encode()


def message_gone(msg: int) -> bytes:
    return err(f"message {msg} was deleted by another session")


def octets(size: int) -> bytes:
    return f"+OK {size} octets\r\n".encode()


def rset(count: int, size: int) -> bytes:
    return f"+OK maildrop has {counted(count, 'message')} ({size} octets)\r\n".encode()


def signing_off(deleted_count: int) -> bytes:
    return f"+OK signing off, {counted(deleted_count, 'message')} deleted\r\n".encode()


def timed_out(seconds: str) -> bytes:
    return err(f"connection closed after {counted(seconds, 'second')} of inactivity")


def multiline(status: bytes, *lines: bytes) -> bytes:
    return status + b"".join(line + CRLF for line in lines) + TERMINATOR
