"""Importing a whole server: one POP3 import per line of a users file.

The file is CSV with a header line naming the columns ``name`` (the popbox user),
``login`` (at the source; empty: the name) and ``password`` or ``password_file``.
Through a master user (``--master-user``) every login uses the master's one password,
as Dovecot's master users and Exchange's impersonation do: the file then names only
the users (``name`` and ``login``), and a password in it is refused rather than
silently ignored.
Imports run ``concurrency`` at a time, and logins to the source start at most
``logins_per_second`` apart, so a source with login limits (Exchange's
MaxConnectionsPerUser, fail2ban, Dovecot's mail_max_userip_connections) is not tripped.
Each user ends with one result line; a user that fails (login refused, source lost) does
not stop the others, and running the same command again continues every unfinished one.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from popbox.store.base import StoreError
from popbox.transfer.pop3_client import SourceError
from popbox.transfer.pop3_import import Pop3ImportReport, import_pop3

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from popbox.store.base import MailStore
    from popbox.transfer.pop3_import import Pop3Import, Pop3Source

_REDRAW = 0.1  # seconds between redraws of the progress line

__all__ = ["UserRow", "UsersOptions", "UsersSummary", "import_users", "read_users"]


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    login: str
    password: str | None  # None: the master user's password (``read_users(master=True)``)


@dataclass(frozen=True, slots=True)
class UsersOptions:
    concurrency: int = 4
    logins_per_second: float = 5.0


@dataclass(slots=True)
class UserResult:
    name: str
    complete: bool
    report: Pop3ImportReport | None
    error: str | None = None


@dataclass(slots=True)
class UsersSummary:
    results: list[UserResult] = field(default_factory=list)

    @property
    def all_complete(self) -> bool:
        return all(result.complete for result in self.results)

    def to_json(self) -> str:
        users = []
        for result in self.results:
            entry: dict[str, object] = {"name": result.name, "complete": result.complete}
            if result.error is not None:
                entry["error"] = result.error
            if result.report is not None:
                entry.update(dataclasses.asdict(result.report))
            users.append(entry)
        summary = {"complete": self.all_complete, "users": users}
        return json.dumps(summary, indent=2) + "\n"


def read_users(path: Path, *, master: bool = False) -> list[UserRow]:
    """The rows of the users file; ``ValueError`` naming the line of a bad one.

    With ``master`` the rows carry no password: every login is the master user's.
    """
    rows: list[UserRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if "name" not in columns or not (master or columns & {"password", "password_file"}):
            raise ValueError(
                f"{path}:1: the header must name name, login, password or password_file"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            name = (row.get("name") or "").strip()
            if not name:
                raise ValueError(f"{where}: no name")
            if any(row.name == name for row in rows):
                raise ValueError(f"{where}: {name} is listed twice")
            if master and (row.get("password") or (row.get("password_file") or "").strip()):
                raise ValueError(
                    f"{where}: a master user logs in with one password for every user:"
                    " give it with --password-stdin or --password-file, not in the file"
                )
            secret = None if master else _secret(row, where)
            rows.append(UserRow(name, (row.get("login") or "").strip() or name, secret))
    if not rows:
        raise ValueError(f"{path}: no users")
    return rows


def _secret(row: dict[str, str | None], where: str) -> str:
    password = row.get("password") or ""
    file_name = (row.get("password_file") or "").strip()
    if password and file_name:
        raise ValueError(f"{where}: give password or password_file, not both")
    if file_name:
        try:
            lines = Path(file_name).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: cannot read {file_name}: {exc}") from None
        password = lines[0] if lines else ""
    if not password:
        raise ValueError(f"{where}: empty password")
    return password


class _LoginPacer:
    """Logins start at least ``1 / rate`` seconds apart."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            delay = self._next - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = max(self._next, self._clock()) + self._gap


async def import_users(  # noqa: PLR0913 - the store, the work, and where to report
    store: MailStore,
    users: list[UserRow],
    template: Pop3Source,
    imports: Pop3Import,
    options: UsersOptions,
    *,
    out: TextIO,
    progress_to: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> UsersSummary:
    """Import every user (module docs); one result line each on ``out``.

    ``template`` is the source with its login options; a row's password replaces its
    password unless the row has none (the master user's, in ``template``, then).
    """
    summary = UsersSummary()
    limit = asyncio.Semaphore(max(1, options.concurrency))
    pacer = _LoginPacer(options.logins_per_second, clock)
    progress = _Progress(len(users), progress_to, clock)

    async def one(user: UserRow) -> None:
        async with limit:
            await pacer.wait()
            credentials = dataclasses.replace(
                template.credentials,
                login=user.login,
                password=template.credentials.password if user.password is None else user.password,
            )
            source = dataclasses.replace(template, credentials=credentials)
            result = await _import_user(store, user.name, source, imports, progress)
            summary.results.append(result)
            progress.clear()
            out.write(_result_line(result) + "\n")
            out.flush()
            progress.user_done()

    await asyncio.gather(*(one(user) for user in users))
    progress.clear()
    done = sum(result.complete for result in summary.results)
    messages = sum(r.report.imported for r in summary.results if r.report is not None)
    octets = sum(r.report.octets for r in summary.results if r.report is not None)
    out.write(
        f"{done} of {len(users)} users complete; {messages} messages ({octets} octets) imported\n"
    )
    order = {user.name: position for position, user in enumerate(users)}
    summary.results.sort(key=lambda result: order[result.name])
    return summary


async def _import_user(
    store: MailStore, name: str, source: Pop3Source, imports: Pop3Import, progress: _Progress
) -> UserResult:
    try:
        report = await import_pop3(store, name, source, imports, progress.message_done)
    except (SourceError, StoreError) as exc:
        return UserResult(name, complete=False, report=None, error=str(exc) or type(exc).__name__)
    return UserResult(name, complete=report.complete, report=report, error=report.stopped)


def _result_line(result: UserResult) -> str:
    report = result.report
    if report is None:
        return f"{result.name}: FAILED: {result.error}"
    state = "complete" if result.complete else "INCOMPLETE"
    line = (
        f"{result.name}: {state}: {report.imported + report.already} of {report.total}"
        f" messages ({report.imported} imported now, {report.already} before,"
        f" {report.octets} octets), {len(report.problems)} problems"
    )
    return line + (f"; {result.error}" if result.error else "")


class _Progress:
    """Users, messages, octets and an ETA on one redrawn line of a terminal; else nothing."""

    def __init__(self, users: int, stream: TextIO | None, clock: Callable[[], float]) -> None:
        self._users = users
        self._users_done = 0
        self._messages = 0
        self._octets = 0
        self._seen: dict[int, int] = {}  # id(report) -> its octets already counted
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._last = -1.0

    def message_done(self, report: Pop3ImportReport) -> None:
        self._messages += 1
        self._octets += report.retrieved_octets - self._seen.get(id(report), 0)
        self._seen[id(report)] = report.retrieved_octets
        self._draw(force=False)

    def user_done(self) -> None:
        self._users_done += 1
        self._draw(force=True)

    def clear(self) -> None:
        if self._stream is not None and self._last >= 0:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _draw(self, *, force: bool) -> None:
        now = self._clock()
        if self._stream is None or (not force and now - self._last < _REDRAW):
            return
        self._last = now
        eta = "?"
        if self._users_done:
            left = (now - self._start) / self._users_done * (self._users - self._users_done)
            eta = f"{left:.0f} s"
        self._stream.write(
            f"\r\x1b[Kusers {self._users_done}/{self._users}, {self._messages} messages,"
            f" {self._octets / 1e6:.1f} MB, ETA {eta}"
        )
        self._stream.flush()
