"""The interface every SASL mechanism implements, and its step results.

A mechanism is one object per authentication exchange.  ``start`` receives the initial
response (None when the client sent none, b"" for "="), ``step`` each later response;
each returns what to do next.  Mechanisms look users up through the ``AuthContext`` so
that none of them touches the store or the network layer directly.  They are coroutines
because verifying a credential may hash (off the event loop) or read the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from popbox.directory.base import Account
    from popbox.directory.chain import DirectoryChain
    from popbox.store.base import MailStore

__all__ = ["AuthContext", "Challenge", "Failure", "Mechanism", "Step", "Success"]


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send this to the client ("+ " base64) and wait for its response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated: ``user`` is the mailbox to open (the authorization identity).

    ``account`` is set when a directory other than the mail store's users vouched for
    the user: its mailbox is created at the first login.
    """

    user: str
    account: Account | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Refused.  ``reason`` goes to the log only; the client gets a generic [AUTH] reply.

    ``user`` is the identity the client claimed, when known, for the log and for
    per-user brute-force accounting.
    """

    reason: str
    user: str | None = None
    # The right password for a disabled account: the client is told this reason
    # (RFC 3206 [SYS/PERM]), never someone without the password.
    disabled_reason: str | None = None
    # A directory could not answer: [SYS/TEMP], not "wrong password" (``directory``
    # names it; "" for the mail store).
    temporary: bool = False
    directory: str = ""
    permanent: bool = False  # with temporary: [SYS/PERM], an administrator must act


Step = Challenge | Success | Failure


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a mechanism may know about the connection it authenticates."""

    store: MailStore
    peer: str  # client address, for logs
    tls_active: bool
    # Where PLAIN and LOGIN check passwords; None: the mail store's users alone (what a
    # server without [[directory]] has).
    directories: DirectoryChain | None = None
    peer_ip: str = ""  # the client's IP address alone, for a directory's allow_nets


class Mechanism(Protocol):
    name: ClassVar[str]  # the SASL name CAPA and AUTH use (RFC 4422 s3.1)
    plaintext: ClassVar[bool]  # sends the password itself: follows login_type (V0010)

    async def start(self, initial: bytes | None) -> Step: ...

    async def step(self, response: bytes) -> Step: ...
