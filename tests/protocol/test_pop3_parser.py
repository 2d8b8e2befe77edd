"""parse_command: one line in, one typed command or ParseError out (RFC 1939 s3, 2.1.1)."""

from __future__ import annotations

import pytest

from popbox.protocol.commands import (
    Auth,
    Capa,
    Dele,
    List,
    Noop,
    ParseError,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    parse_command,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"CAPA", Capa()),
        (b"STLS", Stls()),
        (b"QUIT", Quit()),
        (b"STAT", Stat()),
        (b"NOOP", Noop()),
        (b"RSET", Rset()),
        (b"USER alice", User("alice")),
        (b"PASS secret", Pass("secret")),
        (b"AUTH", Auth()),
        (b"AUTH PLAIN", Auth("PLAIN")),
        (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", Auth("PLAIN", "AGFsaWNlAHNlY3JldA==")),
        (b"LIST", List()),
        (b"LIST 3", List(3)),
        (b"UIDL", Uidl()),
        (b"UIDL 3", Uidl(3)),
        (b"RETR 1", Retr(1)),
        (b"DELE 2", Dele(2)),
        (b"TOP 1 10", Top(1, 10)),
    ],
)
def test_every_command_parses_to_its_typed_form_rfc1939_s5(line, command):
    """RFC 1939 s3: "Commands in the POP3 consist of a case-insensitive keyword, possibly
    followed by one or more arguments." """
    assert parse_command(line) == command
    assert parse_command(line, single_space=True) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [(b"stat", Stat()), (b"Stat", Stat()), (b"sTaT", Stat()), (b"top 1 0", Top(1, 0))],
)
def test_keywords_are_case_insensitive_rfc1939_s3(line, command):
    """RFC 1939 s3: "Commands in the POP3 consist of a case-insensitive keyword"."""
    assert parse_command(line) == command


def test_auth_mechanism_name_is_case_insensitive_rfc5034_s4():
    """RFC 5034 s4 / RFC 4422 s3.1: a mechanism name is upper-case; "auth plain" names PLAIN."""
    assert parse_command(b"auth plain =") == Auth("PLAIN", "=")


@pytest.mark.parametrize(
    "line",
    [b"TOP  1  10", b"TOP\t1\t10", b"TOP \t 1\t \t10", b"TOP\t\t\t1          10", b"TOP 1 10 \t "],
)
def test_space_and_tab_runs_separate_arguments_2_1_1(line):
    """2.1.1: "Microsoft Exchange Server separates keywords and arguments by one or more
    SPACE characters, or one or more TAB characters." """
    assert parse_command(line) == Top(1, 10)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"TOP  1 10", "TOP arguments must be separated by a single space"),
        (b"TOP 1  10", "TOP arguments must be separated by a single space"),
        (b"TOP 1 10 ", "TOP arguments must be separated by a single space"),
        (b"STAT  ", "STAT arguments must be separated by a single space"),
        (b"TOP 1\t10", "TOP needs a message number and a number of lines"),
        (b"TOP\t1 10", "unknown command"),
    ],
)
def test_single_space_mode_refuses_other_separators_rfc1939_s3(line, text):
    """RFC 1939 s3: "Keywords and arguments are each separated by a single SPACE character."
    The rfc1939 profile (single_space) holds to that: runs of spaces and TABs are refused."""
    assert parse_command(line, single_space=True) == ParseError(text)


def test_single_space_mode_accepts_single_spaces_rfc1939_s3():
    """RFC 1939 s3: "Keywords and arguments are each separated by a single SPACE character." """
    assert parse_command(b"TOP 1 10", single_space=True) == Top(1, 10)


def test_no_40_character_argument_limit_2_1_2():
    """2.1.2: "Microsoft Exchange Server does not validate the length of each argument.
    Instead, a default maximum command length of 512 octets is enforced." """
    name = "n" * 200
    assert parse_command(f"USER {name}".encode()) == User(name)
    response = "QUFB" * 100
    assert parse_command(f"AUTH PLAIN {response}".encode()) == Auth("PLAIN", response)


@pytest.mark.parametrize(
    ("line", "password"),
    [
        (b"PASS my secret  pass ", "my secret  pass "),
        (b"PASS \t two\twords", "two\twords"),
        (b"PASS  leading", "leading"),
        (b"PASS a", "a"),
        (b"pass CAPA", "CAPA"),
    ],
)
def test_pass_takes_whole_remainder_of_line_v0011(line, password):
    """V0011: "Microsoft Exchange allows unquoted spaces in the PASS argument, and uses the
    entire remainder of the command as a single password argument." The separator run
    after the keyword is not part of it."""
    assert parse_command(line) == Pass(password)


def test_pass_in_single_space_mode_keeps_extra_spaces_v0011():
    """V0011: "uses the entire remainder of the command as a single password argument";
    with single SPACE separators the one separator is removed and nothing else."""
    assert parse_command(b"PASS  two spaces", single_space=True) == Pass(" two spaces")


def test_pass_falls_back_to_latin1_for_non_utf8_v0011():
    """V0011: "uses the entire remainder of the command as a single password argument." A
    Latin-1 password is kept octet for octet, marked as not UTF-8 (the profiles that list
    "UTF8 USER" refuse it, RFC 6856 s2.2)."""
    assert parse_command(b"PASS gr\xfc\xdfe") == Pass("gr\xfc\xdfe", utf8=False)
    assert parse_command("PASS grüße".encode()) == Pass("grüße")


@pytest.mark.parametrize("line", [b"PASS", b"PASS ", b"PASS \t "])
def test_pass_without_password_is_refused_rfc1939_s7(line):
    """RFC 1939 s7: PASS string, "Arguments: a server/mailbox-specific password (required)"."""
    assert parse_command(line) == ParseError("PASS needs a password")


@pytest.mark.parametrize("verb", ["RETR", "DELE", "LIST", "UIDL"])
@pytest.mark.parametrize(
    ("argument", "text"),
    [
        ("x", "must be a decimal number"),
        ("1a", "must be a decimal number"),
        ("-1", "must be a decimal number"),
        ("+1", "must be a decimal number"),
        ("1.0", "must be a decimal number"),
        ("\u0661", "must be a decimal number"),  # ARABIC-INDIC DIGIT ONE
        ("\uff11", "must be a decimal number"),  # FULLWIDTH DIGIT ONE
        ("\u00b2", "must be a decimal number"),  # SUPERSCRIPT TWO: isdigit() is true
        ("0", "must be 1 or greater"),
        ("000", "must be 1 or greater"),
        ("1234567890", "is too large"),
        ("99999999999999999999999999999999", "is too large"),
    ],
)
def test_message_number_errors_have_distinct_texts_rfc1939_s5(verb, argument, text):
    """RFC 1939 s5: RETR "a message-number (required)"; STYLE s3: "Message numbers are ASCII
    digits only, capped length, 0 → error ... Each case gets its own text"."""
    result = parse_command(f"{verb} {argument}".encode())
    assert result == ParseError(f"{verb} message number {text}")


def test_message_number_with_leading_zeros_within_cap_is_accepted_rfc1939_s5():
    """RFC 1939 s5: a message-number is a decimal number; leading zeros change nothing."""
    assert parse_command(b"RETR 000000007") == Retr(7)
    assert parse_command(b"RETR 999999999") == Retr(999999999)


def test_top_with_zero_lines_is_legal_rfc1939_s7():
    """RFC 1939 s7: TOP msg n, "a non-negative number of lines (required)"; 0 means the
    headers only and must not be confused with "absent"."""
    assert parse_command(b"TOP 1 0") == Top(1, 0)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"TOP", "TOP needs a message number and a number of lines"),
        (b"TOP 1", "TOP needs a message number and a number of lines"),
        (b"TOP 1 2 3", "TOP needs a message number and a number of lines"),
        (b"TOP 0 1", "TOP message number must be 1 or greater"),
        (b"TOP x 1", "TOP message number must be a decimal number"),
        (b"TOP 1 -1", "TOP number of lines must be a decimal number"),
        (b"TOP 1 x", "TOP number of lines must be a decimal number"),
        (b"TOP 1 1234567890", "TOP number of lines is too large"),
    ],
)
def test_top_arity_and_numbers_rfc1939_s7(line, text):
    """RFC 1939 s7: TOP msg n, "a message-number (required) ... and a non-negative number of
    lines (required)"."""
    assert parse_command(line) == ParseError(text)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"RETR", "RETR needs exactly one message number"),
        (b"RETR 1 2", "RETR needs exactly one message number"),
        (b"DELE", "DELE needs exactly one message number"),
        (b"LIST 1 2", "LIST takes at most one message number"),
        (b"UIDL 1 2", "UIDL takes at most one message number"),
        (b"STAT 1", "STAT takes no arguments"),
        (b"NOOP x", "NOOP takes no arguments"),
        (b"QUIT now", "QUIT takes no arguments"),
        (b"CAPA x", "CAPA takes no arguments"),
        (b"STLS x", "STLS takes no arguments"),
        (b"RSET 1", "RSET takes no arguments"),
    ],
)
def test_arity_is_checked_in_the_parser_rfc1939_s3(line, text):
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator." """
    assert parse_command(line) == ParseError(text)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"AUTH", Auth(None, None)),
        (b"AUTH GSSAPI", Auth("GSSAPI", None)),
        (b"AUTH ntlm", Auth("NTLM", None)),
        (b"AUTH SCRAM-SHA-256 =", Auth("SCRAM-SHA-256", "=")),
        (b"AUTH X_Y-Z 0 ", Auth("X_Y-Z", "0")),
        (b"AUTH ABCDEFGHIJKLMNOPQRST", Auth("ABCDEFGHIJKLMNOPQRST", None)),
    ],
)
def test_auth_forms_rfc5034_s4(line, command):
    """RFC 5034 s4: "AUTH mechanism [initial-response]"; [MS-OXPOP3]: bare AUTH lists the
    mechanisms. The initial response is kept as sent; the connection decodes it."""
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"AUTH PLAIN a b", "AUTH takes a mechanism and at most one initial response"),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU", "AUTH mechanism name is not valid"),
        (b"AUTH PL.AIN", "AUTH mechanism name is not valid"),
        (b"AUTH PL*N", "AUTH mechanism name is not valid"),
        ("AUTH PLA\u0131N".encode(), "AUTH mechanism name is not valid"),  # dotless i
        ("AUTH \u00df".encode(), "AUTH mechanism name is not valid"),  # upper() is "SS"
    ],
)
def test_auth_mechanism_must_be_a_sasl_mech_name_rfc5034_s4(line, text):
    """RFC 5034 s4: "mechanism: A string identifying a SASL authentication mechanism"; RFC
    4422 s3.1 sasl-mech is 1 to 20 of A-Z, 0-9, "-" and "_" (ASCII only: "PLA\u0131N" must
    not turn into PLAIN by upper-casing)."""
    assert parse_command(line) == ParseError(text)


@pytest.mark.parametrize("line", [b"\0", b"NOOP\0", b"PASS se\0cret", b"\0QUIT"])
def test_nul_byte_is_refused_rfc1939_s3(line):
    """RFC 1939 s3: "Keywords and arguments consist of printable ASCII characters." A NUL
    byte is never part of a command, not even of a password."""
    assert parse_command(line) == ParseError("command line contains a NUL byte")


def test_empty_line_is_refused_rfc1939_s3():
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator." """
    assert parse_command(b"") == ParseError("empty command line")


@pytest.mark.parametrize(
    "line",
    [
        b"XYZZY",
        b"APOP alice 0123456789abcdef",
        b"LAST",
        b"ABCDEFGHIJK",
        b" NOOP",
        b"\tNOOP",
        b"NO-OP",
        b"N0OP",
        b"\xff\xfe",
        "N\u00d6OP".encode(),
        b"NOOP\r",
        b"STAT\x0b",
    ],
)
def test_unknown_or_malformed_keyword_rfc1939_s3(line):
    """RFC 1939 s3: "A server MUST respond to an unrecognized, unimplemented, or
    syntactically invalid command by responding with a negative status indicator."
    V0012: "Microsoft Exchange Server does not support the APOP command." """
    assert parse_command(line) == ParseError("unknown command")


@pytest.mark.parametrize(
    ("line", "verb"),
    [(b"RETR \xc3", "RETR"), (b"AUTH PLAIN \x80", "AUTH")],
)
def test_eight_bit_garbage_in_arguments_is_refused_rfc1939_s3(line, verb):
    """RFC 1939 s3: "Keywords and arguments consist of printable ASCII characters." Invalid
    UTF-8 in arguments (PASS aside) is refused with a reason."""
    assert parse_command(line) == ParseError(f"{verb} arguments are not valid UTF-8")


@pytest.mark.parametrize(
    "name",
    ["a\x01b", "a\x7fb", "\u200b", "n" * 256, "\u00e9" * 128],
)
def test_user_name_must_be_printable_and_bounded_rfc1939_s3(name):
    """RFC 1939 s3: "Keywords and arguments consist of printable ASCII characters." Names
    are allowed in UTF-8 but must be printable and at most 255 octets."""
    assert parse_command(f"USER {name}".encode()) == User(
        name, "USER mailbox name is not a valid name"
    )


@pytest.mark.parametrize(
    ("line", "user"),
    [
        (b"USER", User("", "USER needs exactly one mailbox name")),
        (b"USER john smith", User("john smith", "USER needs exactly one mailbox name")),
        (b"USER a\0b", User("a\0b", "command line contains a NUL byte")),
        (b"USER \xff\xfe", User("\ufffd\ufffd", "USER arguments are not valid UTF-8")),
    ],
)
def test_user_with_a_bad_argument_parses_with_its_problem_v0008(line, user):
    """V0008: "Microsoft Exchange Server does not return a negative status to the USER
    command because Microsoft Exchange does not verify whether the specified mailbox
    exists until the client issues the PASS command."  The parser therefore never refuses
    USER: it keeps the reason, and the profile decides (modern: -ERR; Exchange: +OK)."""
    assert parse_command(line) == user


def test_user_name_of_255_octets_and_utf8_is_accepted_2_1_2():
    """2.1.2: "Microsoft Exchange Server does not validate the length of each argument." """
    assert parse_command(b"USER " + b"n" * 255) == User("n" * 255)
    assert parse_command("USER j\u00fcrgen".encode()) == User("j\u00fcrgen")
