"""Reading mbox, Maildir and .eml sources, and the old unique-ids they carry (C0009)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from popbox.transfer.sources import read_eml_folder, read_maildir, read_mbox, unquote_from
from popbox.transfer.uidl import (
    expand_format,
    numeric_uid,
    read_dovecot_uidlist,
    read_uidl_map,
    x_uidl,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_mboxrd_unquoting_removes_one_level_from_every_quoted_from_line() -> None:
    """mboxrd: every line matching ^>*From  was written with one more '>'."""
    body = b">From a\n>>From b\n>>>From c\nFrom? no\n> From no\n"
    assert unquote_from(body, "mboxrd") == b"From a\n>From b\n>>From c\nFrom? no\n> From no\n"


def test_mboxo_unquoting_removes_only_the_single_level() -> None:
    """mboxo: only "From " was quoted, so only ">From " is unquoted."""
    body = b">From a\n>>From b\n"
    assert unquote_from(body, "mboxo") == b"From a\n>>From b\n"


def test_read_mbox_splits_on_from_lines_after_blank_lines(tmp_path: Path) -> None:
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(
        b"From alice@example.org Sat Jan  3 01:05:34 2026\n"
        b"Subject: one\nX-UIDL: old-1\nStatus: RO\n\nbody\n>From here\nFrom inside, not after a"
        b" blank line\n\n"
        b"From bob@example.org Sun Jan  4 02:00:00 2026\n"
        b"Subject: two\n\nsecond\n\n"
    )
    one, two = read_mbox(mbox)
    assert one.raw == (
        b"Subject: one\nX-UIDL: old-1\nStatus: RO\n\nbody\nFrom here\n"
        b"From inside, not after a blank line\n"
    )
    assert (one.uidl, one.retrieved, one.number, one.name) == ("old-1", True, 1, "1")
    assert one.received_at == 1767402334.0  # 2026-01-03T01:05:34Z
    assert (two.raw, two.uidl, two.retrieved) == (b"Subject: two\n\nsecond\n", None, False)


def test_read_mbox_refuses_a_file_that_is_not_an_mbox(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"Subject: no From line\n")
    with pytest.raises(ValueError, match="not an mbox"):
        list(read_mbox(path))


def test_x_uidl_is_read_from_the_header_section_only() -> None:
    assert x_uidl(b"A: b\r\nx-uidl:  abc \r\n\r\nX-UIDL: body\r\n") == "abc"
    assert x_uidl(b"A: b\r\n\r\nX-UIDL: body\r\n") is None
    assert numeric_uid("42") == 42
    assert numeric_uid("042") is None
    assert numeric_uid("4a") is None
    assert numeric_uid("9" * 30) is None


def test_dovecot_uidl_format_variables() -> None:
    """Dovecot's default pop3_uidl_format %08Xu%08Xv: uid and uidvalidity in (lower-case)
    hex, as a real Dovecot serves them (test_import_acceptance checks against one)."""
    assert expand_format("%08Xu%08Xv", 26, 1700000000, "f") == "0000001a6553f100"
    assert expand_format("%u", 26, 5, "f") == "26"
    assert expand_format("%v.%u %f %%", 3, 5, "name") == "5.3 name %"


def test_dovecot_uidlist_v3_saved_and_computed_uidls(tmp_path: Path) -> None:
    path = tmp_path / "dovecot-uidlist"
    path.write_text(
        "3 V1700000000 N4 Gabcdef\n"
        "1 :1700000001.M1P1.host,S=10\n"
        "2 W20 P saved-uidl-2 :1700000002.M2P1.host\n"
        "3 Psaved-3 G123 :1700000003.M3P1.host\n"
    )
    listed = read_dovecot_uidlist(path)
    assert listed.uidl("1700000001.M1P1.host,S=10") == "000000016553f100"
    assert listed.uidl("1700000003.M3P1.host") == "saved-3"
    assert listed.uid("1700000002.M2P1.host") == 2
    assert listed.uidl("unknown") is None


def test_uidl_map_csv(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("key,uidl\n1,abc\nmsg.eml,def\n")
    assert read_uidl_map(path) == {"1": "abc", "msg.eml": "def"}
    path.write_text("1,not valid\n")
    with pytest.raises(ValueError, match=r"map\.csv:1: 'not valid' is not a unique-id"):
        read_uidl_map(path)


def write_maildir(root: Path, files: dict[str, bytes]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for index, (name, raw) in enumerate(files.items()):
        path = root / name
        path.write_bytes(raw)
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))
    return root


def test_read_maildir_new_and_cur_with_seen_flag(tmp_path: Path) -> None:
    """A message in cur/ with the S flag counts as retrieved; new/ ones never do."""
    maildir = write_maildir(
        tmp_path / "Maildir",
        {
            "new/1700000003.M3P1.host": b"Subject: c\n\nc\n",
            "cur/1700000001.M1P1.host:2,S": b"Subject: a\n\na\n",
            "cur/1700000002.M2P1.host:2,RF": b"Subject: b\nX-UIDL: xb\n\nb\n",
        },
    )
    messages = list(read_maildir(maildir))
    assert [m.name for m in messages] == [
        "1700000001.M1P1.host",
        "1700000002.M2P1.host",
        "1700000003.M3P1.host",
    ]
    assert [m.retrieved for m in messages] == [True, False, False]
    assert [m.uidl for m in messages] == [None, "xb", None]
    assert messages[0].received_at == 1_700_000_001


def test_read_maildir_follows_dovecot_uid_order(tmp_path: Path) -> None:
    maildir = write_maildir(
        tmp_path / "Maildir",
        {"cur/a:2,S": b"Subject: a\n\n", "cur/b:2,": b"Subject: b\n\n", "new/c": b"S: c\n\n"},
    )
    (maildir / "dovecot-uidlist").write_text("3 V7 N9\n5 :b\n8 Pxc :c\n")
    messages = list(read_maildir(maildir))
    assert [(m.name, m.uidl) for m in messages] == [
        ("b", "0000000500000007"),
        ("c", "xc"),
        ("a", None),  # not listed: after the listed ones
    ]


def test_read_eml_folder_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.eml").write_bytes(b"Subject: b\n\n")
    (tmp_path / "a.EML").write_bytes(b"Subject: a\nDate: Sat, 03 Jan 2026 01:05:34 +0000\n\n")
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    one, two = read_eml_folder(tmp_path)
    assert (one.name, two.name) == ("a.EML", "b.eml")
    assert one.received_at == 1767402334.0
