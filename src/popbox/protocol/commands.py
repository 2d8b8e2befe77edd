"""Typed POP3 commands and the one parser that produces them.

``parse_command`` turns one line (without its CRLF) into an immutable command object or a
``ParseError`` carrying the text of the -ERR to send.  Arity, digits and overflow are
rejected here, so handlers never see a malformed argument.  Keywords are
case-insensitive (RFC 1939 section 3).  Keyword and arguments are separated by runs of
SPACE or TAB (2.1.1), or by exactly one SPACE under ``single_space`` (the rfc1939
profile).  There is no 40-character argument limit (2.1.2): only the line length, which
the framing layer enforces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from popbox.protocol.values import Value

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "VERBS",
    "Auth",
    "Capa",
    "Command",
    "Dele",
    "Lang",
    "List",
    "Noop",
    "ParseError",
    "Pass",
    "Quit",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "Utf8",
    "parse_command",
    "verb_of",
]

MAX_MSGNUM_DIGITS = 9  # more than any maildrop holds; keeps int() cheap and bounded
MAX_NAME_OCTETS = 255

# The commands a download repeats (STAT, LIST, UIDL, RETR, DELE, TOP, NOOP) are built
# line after line, so they are ``Value``s, cheap to build; the others come about once a
# session, and parse errors are rare, so they stay dataclasses.


@dataclass(frozen=True, slots=True)
class ParseError:
    """The line is not a valid command; ``text`` explains why (V0001)."""

    text: str


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class User:
    name: str
    # Why ``name`` cannot be a mailbox name (arity, length, characters), or None.  The
    # modern profile answers -ERR with it; the Exchange profiles answer +OK and let PASS
    # fail as for a wrong password (V0008: no check before PASS).
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Pass:
    password: str  # the whole remainder of the line, spaces included (V0011)
    utf8: bool = True  # False: not UTF-8, kept octet for octet as Latin-1


@dataclass(frozen=True, slots=True)
class Utf8:
    pass  # RFC 6856 s2.1: "The "UTF8" command has no parameters."


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str | None = None  # None: bare AUTH lists the mechanisms ([MS-OXPOP3])
    initial_response: str | None = None  # base64 text as sent; "=" means empty (RFC 5034)


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Lang:
    language_range: str | None = None  # None: list the languages (RFC 6856 s3.2)


@dataclass(frozen=True, slots=True)
class Quit:
    pass


class Stat(Value):
    __slots__ = ()


class List(Value):
    __slots__ = ("msg",)
    __match_args__ = ("msg",)
    msg: Final[int | None]

    def __init__(self, msg: int | None = None) -> None:
        self.msg = msg


class Retr(Value):
    __slots__ = ("msg",)
    __match_args__ = ("msg",)
    msg: Final[int]

    def __init__(self, msg: int) -> None:
        self.msg = msg


class Dele(Value):
    __slots__ = ("msg",)
    __match_args__ = ("msg",)
    msg: Final[int]

    def __init__(self, msg: int) -> None:
        self.msg = msg


class Noop(Value):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Rset:
    pass


class Top(Value):
    __slots__ = ("lines", "msg")
    __match_args__ = ("msg", "lines")
    msg: Final[int]  # 1-based, validated > 0
    lines: Final[int]  # body lines; 0 is legal and means "headers only"

    def __init__(self, msg: int, lines: int) -> None:
        self.msg = msg
        self.lines = lines


class Uidl(Value):
    __slots__ = ("msg",)
    __match_args__ = ("msg",)
    msg: Final[int | None]

    def __init__(self, msg: int | None = None) -> None:
        self.msg = msg


Command = (
    Capa
    | User
    | Pass
    | Auth
    | Stls
    | Quit
    | Stat
    | List
    | Retr
    | Dele
    | Noop
    | Rset
    | Top
    | Uidl
    | Lang
    | Utf8
)

# The verb each command is counted and logged as: its keyword, upper-cased.
VERBS: dict[type[Command], str] = {
    cls: cls.__name__.upper()
    for cls in (
        Capa,
        User,
        Pass,
        Auth,
        Stls,
        Quit,
        Stat,
        List,
        Retr,
        Dele,
        Noop,
        Rset,
        Top,
        Uidl,
        Lang,
        Utf8,
    )
}

_NO_ARGS: dict[str, type[Capa | Stls | Quit | Stat | Noop | Rset | Utf8]] = {
    "CAPA": Capa,
    "STLS": Stls,
    "QUIT": Quit,
    "STAT": Stat,
    "NOOP": Noop,
    "RSET": Rset,
    "UTF8": Utf8,
}
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 section 3.1 sasl-mech
_SEPARATORS = re.compile(rb"[ \t]+")  # 2.1.1: runs of SPACE or TAB
_TEXT_SEPARATORS = re.compile(r"[ \t]+")
_KEYWORD = re.compile(rb"[A-Za-z][A-Za-z0-9]{0,9}")  # UTF8 (RFC 6856) has a digit
# "RETR 12", "DELE 3", ...: most lines a client sends in TRANSACTION.  Matched whole, they
# parse to what the general path below gives them, in a third of its time.
_ONE_NUMBER = re.compile(rb"([A-Za-z]{4}) ([0-9]{1,%d})" % MAX_MSGNUM_DIGITS)


def parse_command(line: bytes, *, single_space: bool = False) -> Command | ParseError:
    """Parse one command line (CRLF already removed)."""
    simple = _ONE_NUMBER.fullmatch(line)
    if simple is not None:
        kind = _ONE_NUMBER_KINDS.get(simple[1].upper())
        msg = int(simple[2])
        if kind is not None and msg >= 1:
            return kind(msg)
    return parse_general(line, single_space=single_space)


def parse_general(line: bytes, *, single_space: bool = False) -> Command | ParseError:
    """``parse_command`` without its shortcut: every line, every error message."""
    if not line:
        return ParseError("empty command line")
    keyword, rest = _split_keyword(line, single_space=single_space)
    if keyword.upper() == b"USER":  # V0008: any argument parses; its problem travels with it
        return _parse_user(rest, single_space=single_space)
    if b"\0" in line:
        return ParseError("command line contains a NUL byte")
    if not _KEYWORD.fullmatch(keyword):
        return ParseError("unknown command")
    verb = keyword.decode("ascii").upper()
    if verb == "PASS":
        return _parse_pass(rest)
    args = _arguments(verb, rest, single_space=single_space)
    return args if isinstance(args, ParseError) else _dispatch(verb, args)


def _arguments(verb: str, rest: bytes, *, single_space: bool) -> list[str] | ParseError:
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError(f"{verb} arguments are not valid UTF-8")
    if not text:
        return []
    if not single_space:
        return [arg for arg in _TEXT_SEPARATORS.split(text) if arg]
    args = text.split(" ")
    if "" in args:
        return ParseError(f"{verb} arguments must be separated by a single space")
    return args


def _split_keyword(line: bytes, *, single_space: bool) -> tuple[bytes, bytes]:
    if single_space:
        keyword, _, rest = line.partition(b" ")
        return keyword, rest
    match = _SEPARATORS.search(line)
    if match is None:
        return line, b""
    return line[: match.start()], line[match.end() :]


def _parse_pass(rest: bytes) -> Pass | ParseError:
    if not rest:
        return ParseError("PASS needs a password")
    try:
        return Pass(rest.decode("utf-8"))
    except UnicodeDecodeError:
        # Some clients send Latin-1 passwords; keep every octet rather than refuse.  The
        # profiles that list "UTF8 USER" refuse it (RFC 6856 s2.2), the others try it.
        return Pass(rest.decode("latin-1"), utf8=False)


def _dispatch(verb: str, args: list[str]) -> Command | ParseError:
    if verb in _NO_ARGS:
        return ParseError(f"{verb} takes no arguments") if args else _NO_ARGS[verb]()
    parser = _PARSERS.get(verb)
    return parser(verb, args) if parser else ParseError("unknown command")


def _parse_user(rest: bytes, *, single_space: bool) -> User:
    """USER and whatever follows it: the name, and what is wrong with it if anything."""
    if b"\0" in rest:
        return User(rest.decode("utf-8", "replace"), "command line contains a NUL byte")
    args = _arguments("USER", rest, single_space=single_space)
    if isinstance(args, ParseError):
        return User(rest.decode("utf-8", "replace"), args.text)
    if len(args) != 1:
        return User(" ".join(args), "USER needs exactly one mailbox name")
    if len(args[0].encode("utf-8")) > MAX_NAME_OCTETS or not args[0].isprintable():
        return User(args[0], "USER mailbox name is not a valid name")
    return User(args[0])


def _parse_listing(verb: str, args: list[str]) -> List | Uidl | ParseError:
    kind = List if verb == "LIST" else Uidl
    if len(args) > 1:
        return ParseError(f"{verb} takes at most one message number")
    if not args:
        return kind()
    msg = _number(verb, args[0], "message number", minimum=1)
    return msg if isinstance(msg, ParseError) else kind(msg)


def _parse_one_message(verb: str, args: list[str]) -> Retr | Dele | ParseError:
    if len(args) != 1:
        return ParseError(f"{verb} needs exactly one message number")
    msg = _number(verb, args[0], "message number", minimum=1)
    if isinstance(msg, ParseError):
        return msg
    return Retr(msg) if verb == "RETR" else Dele(msg)


def _parse_top(_verb: str, args: list[str]) -> Top | ParseError:
    if len(args) != 2:
        return ParseError("TOP needs a message number and a number of lines")
    msg = _number("TOP", args[0], "message number", minimum=1)
    if isinstance(msg, ParseError):
        return msg
    lines = _number("TOP", args[1], "number of lines", minimum=0)
    if isinstance(lines, ParseError):
        return lines
    return Top(msg, lines)


def _parse_lang(_verb: str, args: list[str]) -> Lang | ParseError:
    if len(args) > 1:
        return ParseError("LANG takes at most one language range")
    return Lang(args[0] if args else None)


def _parse_auth(_verb: str, args: list[str]) -> Auth | ParseError:
    if not args:
        return Auth()
    if len(args) > 2:
        return ParseError("AUTH takes a mechanism and at most one initial response")
    mechanism = args[0].upper()
    # isascii first: str.upper() maps some non-ASCII letters to ASCII ("\u0131" to "I").
    if not args[0].isascii() or not _MECHANISM.fullmatch(mechanism):
        return ParseError("AUTH mechanism name is not valid")
    return Auth(mechanism, args[1] if len(args) == 2 else None)


_ONE_NUMBER_KINDS: dict[bytes, type[Retr | Dele | List | Uidl]] = {
    b"RETR": Retr,
    b"DELE": Dele,
    b"LIST": List,
    b"UIDL": Uidl,
}
_PARSERS: dict[str, Callable[[str, list[str]], Command | ParseError]] = {
    "AUTH": _parse_auth,
    "LANG": _parse_lang,
    "LIST": _parse_listing,
    "UIDL": _parse_listing,
    "RETR": _parse_one_message,
    "DELE": _parse_one_message,
    "TOP": _parse_top,
}


def _number(verb: str, text: str, what: str, *, minimum: int) -> int | ParseError:
    if not text.isascii() or not text.isdigit():
        return ParseError(f"{verb} {what} must be a decimal number")
    if len(text) > MAX_MSGNUM_DIGITS:
        return ParseError(f"{verb} {what} is too large")
    value = int(text)
    if value < minimum:
        return ParseError(f"{verb} {what} must be {minimum} or greater")
    return value


def verb_of(line: bytes) -> str:
    """The keyword for the protocol log, or "?" when it is not a plausible one."""
    keyword = line.split(None, 1)[0][:10] if line.strip() else b""
    return keyword.decode("ascii").upper() if _KEYWORD.fullmatch(keyword) else "?"
