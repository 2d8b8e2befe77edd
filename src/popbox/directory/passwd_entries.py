"""Reading a Dovecot passwd-file: one user per line, bad lines reported, not fatal.

The format (Dovecot's ``passwd-file`` driver): ``user:password:uid:gid:gecos:home:shell:
extra_fields``, where only the first two are required, blank lines and lines starting
with ``#`` are skipped, and ``extra_fields`` (the rest of the line, colons included) is
a space-separated list of ``key=value`` or bare ``flag`` words.  The ones popbox acts on:

* ``nologin`` (with ``reason=TEXT``): the account is disabled; ``reason`` is what a login
  with the right password is told.  As an extension, ``reason`` takes the following
  words up to the next ``key=value``, so it may contain spaces (Dovecot would see stray
  flags there, which it ignores).
* ``allow_nets=10.0.0.0/8,2001:db8::/32``: logins only from those networks.
* ``quota_rule=*:storage=1G`` (also ``userdb_quota_rule``): the mailbox's quota; a bare
  ``storage`` number is in kilobytes, with ``b``/``k``/``M``/``G``/``T`` suffixes, as in
  Dovecot; ``*:bytes=N`` is octets; ``0`` means none.
* ``user=NAME`` (also ``userdb_user``): the user logs in to mailbox ``NAME`` (a rename).

Unknown extra fields are ignored: a file written for Dovecot carries many that only
matter there (``userdb_mail``, ``nodelay``...).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from popbox.directory import schemes

__all__ = ["Entry", "Parsed", "Problem", "parse_lines"]

_UNITS: Final = {"": 1024, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE: Final = re.compile(r"(\d{1,15})([bBkKmMgGtT]?)")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Entry:
    """One user of a passwd-file."""

    user: str
    stored: schemes.StoredHash | None  # None: an empty password field, no login possible
    line: int
    disabled_reason: str | None = None
    allow_nets: tuple[Network, ...] = ()
    quota_bytes: int | None = None
    mailbox: str | None = None  # user=: the mailbox, when it is not the login name


@dataclass(frozen=True, slots=True)
class Problem:
    """A line that was skipped: its number, why, and whose it was (when readable)."""

    line: int
    text: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    entries: dict[str, Entry]
    problems: tuple[Problem, ...]


def parse_lines(text: str, default_scheme: str, fold: bool) -> Parsed:  # noqa: FBT001 - one flag
    """Every entry of a passwd-file's ``text``; ``fold`` lower-cases the local parts too.

    A user's name is compared as the login rules leave it: the domain lower-cased, and
    the local part when ``fold``.  A name given twice counts at its first line.
    """
    entries: dict[str, Entry] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        user = _fold(fields[0], fold)
        if len(fields) < 2 or not user:
            problems.append(Problem(number, "not of the form user:password[:...]"))
            continue
        if user in entries:
            first = entries[user].line
            problems.append(Problem(number, f"user {user} is also on line {first}", user))
            continue
        try:
            entries[user] = _entry(user, fields, number, default_scheme)
        except ValueError as exc:
            problems.append(Problem(number, str(exc), user))
    return Parsed(entries, tuple(problems))


def _fold(name: str, fold: bool) -> str:  # noqa: FBT001
    local, at, domain = name.rpartition("@")
    if not at:
        return name.lower() if fold else name
    return f"{local.lower() if fold else local}@{domain.lower()}"


def _entry(user: str, fields: list[str], number: int, default_scheme: str) -> Entry:
    stored = schemes.parse(fields[1], default_scheme) if fields[1] else None
    extra = _extra_fields(":".join(fields[7:]))
    nets = extra.get("allow_nets")
    quota = extra.get("quota_rule", extra.get("userdb_quota_rule"))
    rename = extra.get("user", extra.get("userdb_user"))
    return Entry(
        user=user,
        stored=stored,
        line=number,
        disabled_reason=extra.get("reason", "") if "nologin" in extra else None,
        allow_nets=_networks(nets) if nets is not None else (),
        quota_bytes=_quota(quota) if quota is not None else None,
        mailbox=rename or None,
    )


def _extra_fields(text: str) -> dict[str, str]:
    """``key=value`` words as a map; a bare flag maps to ""; ``reason`` may span words."""
    found: dict[str, str] = {}
    in_reason = False
    for word in text.split():
        key, equals, value = word.partition("=")
        if not equals and in_reason:
            found["reason"] += " " + word
            continue
        in_reason = key == "reason"
        found.setdefault(key, value)
    return found


def _networks(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(net.strip(), strict=False) for net in text.split(","))
    except ValueError as exc:
        raise ValueError(f"allow_nets: {exc}") from None


def _quota(rule: str) -> int | None:
    """The octets of ``*:storage=SIZE`` or ``*:bytes=N``; None for 0 (no limit)."""
    mailbox, colon, limit = rule.partition(":")
    kind, equals, size = limit.partition("=")
    match = _SIZE.fullmatch(size)
    if mailbox != "*" or not colon or not equals or kind not in ("storage", "bytes") or not match:
        raise ValueError(f"quota_rule {rule!r}: expected *:storage=SIZE or *:bytes=N")
    if kind == "bytes" and match[2]:
        raise ValueError(f"quota_rule {rule!r}: bytes= takes a plain number of octets")
    octets = int(match[1]) * (1 if kind == "bytes" else _UNITS[match[2].upper()])
    return octets or None
