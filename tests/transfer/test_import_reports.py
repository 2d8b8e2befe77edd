"""Nothing of a source is dropped or altered silently (issue 15 item 6), with real files.

The rule (README "Import and export"): a whole message is imported; what is not one is
listed by path under "not imported", on a summary that ends with exit status 1:
an mbox's last message when the file ends inside it (RFC 4155 s2: every message ends
with an empty line), an empty file or message, and a Maildir or .eml folder entry that
is not a regular file (a directory, a FIFO, a symbolic link to nothing).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

import pytest

from popbox.cli import main
from popbox.store import open_store
from popbox.store.message import normalise

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.store.base import MailStore

MESSAGES = [
    b"Subject: one\nMessage-ID: <1@example.org>\n\nfirst body\n",
    b"Subject: two\nMessage-ID: <2@example.org>\n\nsecond body\n> quoted\n",
    b"Subject: three\nMessage-ID: <3@example.org>\n\nthird body, line one\nline two\n",
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "popbox.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')

    async def add_alice(store: MailStore) -> None:
        await store.add_user("alice", {})

    stored(path, add_alice)
    return path


def stored(config: Path, work: object = None) -> list[bytes]:
    """Run ``work`` on the store, then return alice's messages as RETR sends them."""

    async def run() -> list[bytes]:
        store = open_store("sqlite", data_dir=config.parent / "data", dsn="")
        await store.open()
        try:
            if work is not None:
                await work(store)  # type: ignore[operator]
                return []
            wires = [await store.fetch("alice", info.uid) for info in await store.snapshot("alice")]
            return [wire for wire in wires if wire is not None]
        finally:
            await store.close()

    return asyncio.run(run())


def run_import(config: Path, kind: str, path: Path, capsys: pytest.CaptureFixture[str]):
    status = main(["import", kind, "alice", str(path), "--config", str(config)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def body_of(wire: bytes) -> bytes:
    """The message as the source had it: without the trace headers delivery adds."""
    return wire[wire.index(b"Subject: ") :]


def mbox_of(messages: list[bytes]) -> bytes:
    return b"".join(b"From a@example.org Sat Jan  3 01:05:34 2026\n" + m + b"\n" for m in messages)


@pytest.mark.parametrize("cut", ["mid-line", "at-line-end"])
def test_truncated_mbox_last_message_is_reported_and_the_complete_file_adds_it_once(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    """RFC 4155 s2: each message is "terminated by an empty line".  A file that ends
    inside its last message is imported but for that message, which is named by path
    and line; importing the complete file later adds it, once, whole."""
    complete = mbox_of(MESSAGES)
    end = complete.index(b"line two") + (3 if cut == "mid-line" else len(b"line two\n"))
    truncated = tmp_path / "alice.mbox"
    truncated.write_bytes(complete[:end])

    status, out, err = run_import(config, "mbox", truncated, capsys)

    assert status == 1
    last_from = complete[: complete.rindex(b"From a@")].count(b"\n") + 1
    assert f"{truncated} line {last_from}: the file ends inside this message" in out
    assert "imported 2 of 2 messages" in out
    assert err == f"popbox import: 1 not imported from {truncated}\n"
    assert [body_of(wire) for wire in stored(config)] == [normalise(m) for m in MESSAGES[:2]]

    truncated.write_bytes(complete)  # the copy finished
    status, out, err = run_import(config, "mbox", truncated, capsys)

    assert (status, err) == (0, "")
    assert "imported 1 of 3 messages" in out
    assert "already imported before, skipped: 2" in out
    assert [body_of(wire) for wire in stored(config)] == [normalise(m) for m in MESSAGES]


def write_maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1700000001.M1.host:2,S").write_bytes(MESSAGES[0])
    (root / "new" / "1700000002.M2.host").write_bytes(MESSAGES[1])
    target = root / "elsewhere" / "1700000003.M3.host"
    target.parent.mkdir()
    target.write_bytes(MESSAGES[2])
    (root / "new" / "1700000003.M3.host").symlink_to(target)  # a link to a file: a message
    return root


def test_maildir_entries_that_are_no_messages_are_reported_by_path(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subdirectory, a dangling symbolic link, a FIFO, a socket and an empty file in
    new/ or cur/ are each named; the three real messages are imported; exit status 1.
    The FIFO is never opened (that would block the import)."""
    maildir = write_maildir(tmp_path / "Maildir")
    (maildir / "cur" / "1700000004.M4.host:2,").mkdir()
    (maildir / "new" / "1700000005.M5.host").symlink_to(tmp_path / "gone")
    os.mkfifo(maildir / "new" / "1700000006.M6.host")
    (maildir / "new" / "1700000007.M7.host").write_bytes(b"")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(maildir / "cur" / "1700000008.M8.host"))
    listener.close()

    status, out, err = run_import(config, "maildir", maildir, capsys)

    assert status == 1
    assert "imported 3 of 4 messages" in out
    expected = [
        f"{maildir}/cur/1700000004.M4.host:2,: a directory, not a message file",
        f"{maildir}/cur/1700000008.M8.host: a socket, not a message file",
        (
            f"{maildir}/new/1700000005.M5.host: a symbolic link to '{tmp_path / 'gone'}',"
            " which does not exist"
        ),
        f"{maildir}/new/1700000006.M6.host: a FIFO, not a message file",
        f"message 4 ({maildir}/new/1700000007.M7.host): empty: no message in it",
    ]
    listed = out.split("not imported (5):\n", 1)[1].splitlines()
    assert listed == [f"  {line}" for line in expected]
    assert err == f"popbox import: 5 not imported from {maildir}\n"
    assert sorted(body_of(wire) for wire in stored(config)) == sorted(
        normalise(m) for m in MESSAGES
    )


def test_clean_maildir_imports_with_status_0(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tmp/ and names beginning with "." are no messages by the Maildir convention."""
    maildir = write_maildir(tmp_path / "Maildir")
    (maildir / "tmp" / "1700000009.M9.host").write_bytes(b"Subject: half-delivered\n")
    (maildir / "cur" / ".hidden").write_bytes(b"Subject: not mail\n\n")

    status, out, err = run_import(config, "maildir", maildir, capsys)

    assert (status, err) == (0, "")
    assert "imported 3 of 3 messages" in out
    assert "not imported" not in out


def test_eml_folder_reports_a_directory_a_fifo_and_an_empty_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "1.eml").write_bytes(MESSAGES[0])
    (folder / "2.eml").mkdir()
    os.mkfifo(folder / "3.eml")
    (folder / "4.eml").write_bytes(b"\n\n")

    status, out, _ = run_import(config, "eml", folder, capsys)

    assert status == 1
    assert f"{folder}/2.eml: a directory, not a message file" in out
    assert f"{folder}/3.eml: a FIFO, not a message file" in out
    assert f"message 2 ({folder}/4.eml): empty: no message in it" in out
    assert [body_of(wire) for wire in stored(config)] == [normalise(MESSAGES[0])]


def test_empty_mbox_message_is_reported(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.mbox"
    path.write_bytes(mbox_of([MESSAGES[0], b"", MESSAGES[1]]))

    status, out, _ = run_import(config, "mbox", path, capsys)

    assert status == 1
    assert f"message 2 ({path} line 7): empty: no message in it" in out
    assert len(stored(config)) == 2


def test_mbox_that_is_a_fifo_is_refused_in_one_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The importer reads its source twice: a FIFO would be empty the second time."""
    fifo = tmp_path / "pipe.mbox"
    os.mkfifo(fifo)

    status, out, err = run_import(config, "mbox", fifo, capsys)

    assert (status, out) == (1, "")
    assert err == f"popbox: {fifo}: not a regular file\n"
