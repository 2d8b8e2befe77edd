"""The users file and the whole-server run: bad lines named, progress only on a terminal."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

from fake_pop3 import FakeSource
from popbox.store.memory import MemoryStore
from popbox.transfer.pop3_client import Credentials, Pop3Url, tls_context
from popbox.transfer.pop3_import import Pop3Import, Pop3Source
from popbox.transfer.pop3_users import UsersOptions, import_users, read_users

if TYPE_CHECKING:
    from pathlib import Path

MESSAGE = b"Subject: 1\r\n\r\none\r\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("login,password\nalice,x\n", ":1: the header must name"),
        ("name,password\n,x\n", ":2: no name"),
        ("name,password\nalice,\n", ":2: empty password"),
        ("name,password\nalice,x\nalice,y\n", ":3: alice is listed twice"),
        ("name,password,password_file\nalice,x,/etc/hostname\n", ":2: give password or"),
        ("name,password_file\nalice,/nonexistent/secret\n", ":2: cannot read"),
        ("name,password\n", ": no users"),
    ],
)
def test_bad_users_file_lines_are_named(tmp_path: Path, text: str, problem: str) -> None:
    users = tmp_path / "users.csv"
    users.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_users(users)


def test_through_a_master_user_the_file_names_only_users(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("name,login\nalice,\nbob,bob-at-source\n")
    rows = read_users(users, master=True)
    assert [(row.name, row.login, row.password) for row in rows] == [
        ("alice", "alice", None),
        ("bob", "bob-at-source", None),
    ]
    users.write_text("name,password_file\nalice,/etc/hostname\n")
    with pytest.raises(ValueError, match=":2: a master user logs in with one password"):
        read_users(users, master=True)


async def test_every_user_gets_a_line_and_the_terminal_a_progress_line(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("name,login,password\nalice,,a-secret\nbob,bob-at-source,b-secret\n")
    store = MemoryStore()
    for name in ("alice", "bob"):
        await store.add_user(name, {})
    source = await FakeSource([(b"u1", MESSAGE)]).start()
    template = Pop3Source(
        Pop3Url.parse(source.url),
        Credentials("-", "-", auth="user"),
        tls_context(None, insecure=False),
        allow_plaintext=True,
        timeout=5.0,
    )
    out, terminal = io.StringIO(), io.StringIO()
    size = len(MESSAGE)
    try:
        summary = await import_users(
            store,
            read_users(users),
            template,
            Pop3Import(),
            UsersOptions(concurrency=2, logins_per_second=100.0),
            out=out,
            progress_to=terminal,
        )
    finally:
        await source.stop()
    assert summary.all_complete
    lines = out.getvalue().splitlines()
    assert sorted(lines[:2]) == [
        f"alice: complete: 1 of 1 messages (1 imported now, 0 before, {size} octets), 0 problems",
        f"bob: complete: 1 of 1 messages (1 imported now, 0 before, {size} octets), 0 problems",
    ]
    assert lines[2] == f"2 of 2 users complete; 2 messages ({2 * size} octets) imported"
    assert "USER bob-at-source" in source.commands  # the login column, not the name
    assert "users 2/2" in terminal.getvalue()
    assert [result.name for result in summary.results] == ["alice", "bob"]
