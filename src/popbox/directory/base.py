"""What every user directory answers, and the names it answers about.

A directory is one backend of the ordered chain (``chain.py``): the internal users table,
a Dovecot passwd-file, an LDAP server.  Asked about a login it gives a ``Verdict`` whose
``Status`` tells the chain what to do next (Dovecot's passdb model: found, not found, or
a temporary failure).  A directory never raises for a user it cannot judge: an outage
is ``TEMPFAIL``, so that no caller can mistake it for a wrong password.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Account", "Directory", "LoginName", "Status", "Verdict"]


class Status(enum.Enum):
    OK = "ok"  # authenticate: password right; lookup: the user exists
    UNKNOWN = "unknown"  # this directory does not know the login: the chain tries the next one
    WRONG = "wrong"  # known user, wrong password: the chain stops, the login fails
    DISABLED = "disabled"  # known, password right / exists, but disabled: stop, -ERR with reason
    TEMPFAIL = "tempfail"  # directory down/slow/garbage: stop, [SYS/TEMP], never "wrong password"


@dataclass(frozen=True, slots=True)
class LoginName:
    """A login name as the client sent it and as the directories look it up."""

    raw: str  # as the client sent it
    user: str  # normalised full name: local@domain, or local when there is no domain
    local: str  # the part before @, a DOMAIN\ prefix removed
    domain: str  # lower-cased domain, or ""


@dataclass(frozen=True, slots=True)
class Account:
    """What a directory knows about a user it found."""

    mailbox: str  # mailbox to open / deliver to (after rename or mapping)
    quota_bytes: int | None = None
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """One directory's answer.  ``detail`` is for the log only, never for the client."""

    status: Status
    account: Account | None = None  # set for OK and DISABLED
    detail: str = ""
    # TEMPFAIL only: retrying will not help until an administrator acts (a corrupt
    # record): RFC 3206 [SYS/PERM] instead of [SYS/TEMP].
    permanent: bool = False


class Directory(Protocol):
    """One backend of the chain.

    ``authenticate`` checks a password; ``peer`` is the client's IP address (no port).
    An unknown login must cost what a wrong password costs (V0009: dummy verification
    in the backend's own scheme).  ``lookup`` answers
    without a password (LMTP RCPT, ``popbox deliver``): OK, UNKNOWN, DISABLED or
    TEMPFAIL, never WRONG.  ``healthy`` is False while the backend is in an outage (for
    ``/healthz`` and the metrics); it must not block.
    """

    name: str  # the config's name, for logs, metrics, /healthz

    async def authenticate(self, login: LoginName, password: str, peer: str) -> Verdict: ...

    async def lookup(self, login: LoginName) -> Verdict: ...

    def healthy(self) -> bool: ...

    async def close(self) -> None: ...
