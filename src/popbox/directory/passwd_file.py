"""The passwd-file directory: Dovecot's user file, re-read when it changes.

Theory of operation: every lookup stats the file (one system call, well below a
password check) and compares device, inode, size and modification time with the ones
it was read at; any difference (an edit in place, a new file renamed over it) reads it
again, on a thread, while lookups of the same file wait for the new copy.  So an edit
takes effect at the next login, with no restart and no signal.  Lines that cannot be
read are skipped, each logged once per reading with the file and line; every other user
keeps working.  A user whose own line is broken gets TEMPFAIL, not "wrong password":
the operator must fix the line, and the user must not be told their password is wrong.

With ``%d`` in the path there is one file per domain; a domain without a file is one
this directory does not serve (UNKNOWN, and no outage).  A file that exists but cannot
be read is an outage (TEMPFAIL) until it can.

Timing (V0009): an unknown user is checked against a hash from the file itself, of the
scheme most of its users have, so it costs what a wrong password costs there.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from popbox.directory import schemes
from popbox.directory.base import Account, Status, Verdict
from popbox.directory.passwd_entries import parse_lines

if TYPE_CHECKING:
    import structlog

    from popbox.config.directory_sections import PasswdFileSettings
    from popbox.directory.base import LoginName
    from popbox.directory.passwd_entries import Entry

__all__ = ["PasswdFileDirectory"]

_Signature = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: _Signature
    entries: dict[str, Entry]
    broken: dict[str, str]  # user -> "file:line: problem", for users on skipped lines
    dummy: schemes.StoredHash | None


class _Missing(Exception):
    """The file of a domain does not exist."""


class _Unreadable(Exception):
    """The file exists (or must) and cannot be read now."""


class PasswdFileDirectory:
    """A Dovecot passwd-file (or one per domain) as a directory."""

    def __init__(
        self,
        name: str,
        settings: PasswdFileSettings,
        log: structlog.typing.FilteringBoundLogger,
        *,
        fold_local: bool,
    ) -> None:
        self.name = name
        self._settings = settings
        self._log = log.bind(directory=name)
        self._fold = fold_local
        self._files: dict[Path, _Loaded] = {}
        self._locks: dict[Path, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._healthy = True

    async def authenticate(self, login: LoginName, password: str, peer: str) -> Verdict:
        found = await self._find(login)
        if isinstance(found, Verdict):
            if found.status is Status.UNKNOWN and (dummy := _any_dummy(self._files)):
                await _verify(dummy, password)
            return found
        loaded, entry = found
        if entry is None:
            if loaded.dummy is not None:
                await _verify(loaded.dummy, password)
            return Verdict(Status.UNKNOWN, detail="not in the passwd-file")
        if entry.stored is None or not await _verify(entry.stored, password):
            return Verdict(Status.WRONG, detail=f"wrong password (line {entry.line})")
        if entry.allow_nets and not _allowed(peer, entry):
            return Verdict(Status.WRONG, detail=f"allow_nets refuses {peer} (line {entry.line})")
        return _verdict(entry)

    async def lookup(self, login: LoginName) -> Verdict:
        found = await self._find(login)
        if isinstance(found, Verdict):
            return found
        _, entry = found
        if entry is None:
            return Verdict(Status.UNKNOWN, detail="not in the passwd-file")
        return _verdict(entry)

    def healthy(self) -> bool:
        return self._healthy

    async def close(self) -> None:
        self._files.clear()

    async def _find(self, login: LoginName) -> tuple[_Loaded, Entry | None] | Verdict:
        path_text = self._settings.path
        if "%d" in path_text:
            if not login.domain or "/" in login.domain or login.domain.startswith("."):
                return Verdict(Status.UNKNOWN, detail="no domain for a per-domain file")
            path_text = path_text.replace("%d", login.domain)
        try:
            loaded = await self._current(Path(path_text))
        except _Missing:
            return Verdict(Status.UNKNOWN, detail=f"no passwd-file {path_text}")
        except _Unreadable as exc:
            self._healthy = False
            return Verdict(Status.TEMPFAIL, detail=str(exc))
        self._healthy = True
        key = login.local if self._settings.username_format == "%n" else login.user
        problem = loaded.broken.get(key)
        if problem is not None:
            return Verdict(Status.TEMPFAIL, detail=f"the user's line is broken: {problem}")
        return loaded, loaded.entries.get(key)

    async def _current(self, path: Path) -> _Loaded:
        """The file as it is now: the copy read before if it is unchanged, else read anew."""
        signature = _stat(path, per_domain="%d" in self._settings.path)
        loaded = self._files.get(path)
        if loaded is not None and loaded.signature == signature:
            return loaded
        async with self._locks[path]:
            loaded = self._files.get(path)
            now = _stat(path, per_domain="%d" in self._settings.path)
            if loaded is None or loaded.signature != now:
                loaded = await asyncio.to_thread(self._read, path)
                self._files[path] = loaded
        return loaded

    def _read(self, path: Path) -> _Loaded:
        try:
            # Stat the open file, so the signature is the one of the text read.
            with path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                data = handle.read()
        except OSError as exc:
            raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
        text = data.decode("utf-8", errors="replace")
        parsed = parse_lines(text, self._settings.default_scheme, self._fold)
        broken = {}
        for problem in parsed.problems:
            where = f"{path}:{problem.line}"
            self._log.warning("passwd_file_line_skipped", where=where, problem=problem.text)
            if problem.user is not None and problem.user not in parsed.entries:
                broken[problem.user] = f"{where}: {problem.text}"
        self._log.info("passwd_file_read", file=str(path), users=len(parsed.entries))
        return _Loaded(_signature(stat), parsed.entries, broken, _dummy(parsed.entries))


def _any_dummy(files: dict[Path, _Loaded]) -> schemes.StoredHash | None:
    """A dummy from any file read so far, for a login whose own file does not exist."""
    return next((loaded.dummy for loaded in files.values() if loaded.dummy), None)


def _stat(path: Path, *, per_domain: bool) -> _Signature:
    try:
        return _signature(path.stat())
    except FileNotFoundError:
        if per_domain:
            raise _Missing from None
        raise _Unreadable(f"{path} does not exist") from None
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None


def _signature(stat: os.stat_result) -> _Signature:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _dummy(entries: dict[str, Entry]) -> schemes.StoredHash | None:
    """A hash of the file's most common scheme (a real one: it costs what a check costs).

    Whatever it answers is thrown away, so a password that happens to match it logs
    nobody in.
    """
    by_scheme: dict[str, schemes.StoredHash] = {}
    counts: collections.Counter[str] = collections.Counter()
    for entry in entries.values():
        if entry.stored is not None:
            counts[entry.stored.scheme] += 1
            by_scheme.setdefault(entry.stored.scheme, entry.stored)
    return by_scheme[counts.most_common(1)[0][0]] if counts else None


async def _verify(stored: schemes.StoredHash, password: str) -> bool:
    if schemes.costly(stored):
        return await asyncio.to_thread(schemes.verify, stored, password)
    return schemes.verify(stored, password)


def _allowed(peer: str, entry: Entry) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in entry.allow_nets)


def _verdict(entry: Entry) -> Verdict:
    account = Account(entry.mailbox or entry.user, entry.quota_bytes, entry.disabled_reason)
    if entry.disabled_reason is not None:
        return Verdict(Status.DISABLED, account, detail=f"nologin (line {entry.line})")
    return Verdict(Status.OK, account)
