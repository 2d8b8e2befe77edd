"""What the sans-IO connection says to the I/O layer: events, signals, settings, log records.

Each event names, in its docstring, the ``Pop3Connection`` method that answers it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from popbox.protocol.profiles import MODERN, WireProfile
from popbox.protocol.values import Value

if TYPE_CHECKING:
    from popbox.protocol.message_info import MessageInfo

__all__ = [
    "CommandRecord",
    "ConnectionSettings",
    "Event",
    "LoginType",
    "PasswordLogin",
    "Retrieve",
    "SaslCancelled",
    "SaslContinue",
    "SaslStart",
    "Signal",
    "StartTls",
    "Update",
]

LoginType = Literal["plaintext_login", "plaintext_authentication", "secure_login"]


class Signal(enum.Enum):
    NEED_DATA = "need_data"  # feed more bytes
    CLOSED = "closed"  # flush the output, then close the connection
    # Enough answered for one turn (``PACE_LINES`` lines or ``PACE_OCTETS`` of output):
    # send the output, let other connections run, then call ``next_event`` again.
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    """USER/PASS.  Answer: ``login_succeeded`` or ``login_failed``."""

    user: str
    password: str
    # False when USER's argument cannot be a mailbox name (Exchange profiles, V0008):
    # the login must fail exactly as a wrong password does, same delay, same reply.
    valid_name: bool = True


@dataclass(frozen=True, slots=True)
class SaslStart:
    """AUTH with a mechanism allowed here.  Answer: ``sasl_challenge``, ``login_*``."""

    mechanism: str
    initial_response: bytes | None  # None: no initial response; b"": "=" (RFC 5034)


@dataclass(frozen=True, slots=True)
class SaslContinue:
    """A client response in a SASL exchange.  Answer as for ``SaslStart``."""

    response: bytes


@dataclass(frozen=True, slots=True)
class SaslCancelled:
    """The exchange ended by "*" or bad base64; already answered.  Drop mechanism state."""


@dataclass(frozen=True, slots=True)
class StartTls:
    """STLS accepted.  Flush output, run the handshake, then ``tls_established``."""


class Retrieve(Value):
    """RETR (``lines`` None) or TOP.  Answer: ``send_message``/``message_gone``/``store_failed``."""

    __slots__ = ("info", "lines", "msg")
    __match_args__ = ("msg", "info", "lines")
    msg: Final[int]
    info: Final[MessageInfo]
    lines: Final[int | None]

    def __init__(self, msg: int, info: MessageInfo, lines: int | None) -> None:
        self.msg = msg
        self.info = info
        self.lines = lines


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT from TRANSACTION: remove ``deleted`` atomically.  Answer: ``update_finished``."""

    deleted: tuple[int, ...]
    retrieved: tuple[int, ...]


Event = PasswordLogin | SaslStart | SaslContinue | SaslCancelled | StartTls | Retrieve | Update


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    banner: str = "popbox POP3 server ready"
    max_command_size: int = 512  # 2.1.2, E0006
    sasl_line_max: int = 65536  # RFC 5034: responses are not bound by the command size
    single_space: bool = False  # 2.1.1
    exact_rfc822_size: bool = True  # 2.1.4, 2.1.5
    newest_first: bool = False  # MessageRetrievalSortOrder Descending: message 1 newest
    login_type: LoginType = "secure_login"  # V0010
    tls_active: bool = False  # an implicit-TLS listener
    stls_available: bool = True  # a plain listener with a certificate to upgrade to
    max_bad_commands: int = 20  # C0005
    max_auth_failures: int = 3  # C0005
    expire: str = "NEVER"  # RFC 2449 section 6.7 argument
    # (name, sends the password itself) for every SASL mechanism this server offers,
    # in the order CAPA lists them; the plaintext ones follow login_type like USER.
    sasl_mechanisms: tuple[tuple[str, bool], ...] = ()
    implementation: str = "popbox"
    wire: WireProfile = MODERN  # greeting, CAPA and texts of the compat profile


class CommandRecord(Value):
    """One line of the protocol log: the verb and whether it succeeded; never arguments."""

    __slots__ = ("ok", "verb")
    __match_args__ = ("verb", "ok")
    verb: Final[str]
    ok: Final[bool]

    def __init__(self, verb: str, ok: bool) -> None:  # noqa: FBT001 - a field, set positionally
        self.verb = verb
        self.ok = ok
