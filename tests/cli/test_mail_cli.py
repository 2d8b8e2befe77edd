"""The mail-in subcommands of ``popbox``: import, export, expire, user quota (DESIGN s5)."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import pytest

from popbox.cli import main
from popbox.cli.progress import ProgressBar
from popbox.store.message import prepare
from popbox_cli import in_store

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.store.base import MailStore


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "popbox.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[quota]\ndefault_quota = 5000\n')
    return path


def add_alice(config: Path) -> None:
    async def work(store: MailStore) -> None:
        await store.add_user("alice", {})

    in_store(config.parent / "data", work)


def uidls(config: Path, name: str = "alice") -> list[str]:
    async def work(store: MailStore) -> list[str]:
        return [info.uidl for info in await store.snapshot(name)]

    result = in_store(config.parent / "data", work)
    assert isinstance(result, list)
    return result


def test_import_eml_folder_prints_a_summary(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_alice(config)
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "1.eml").write_bytes(b"Subject: one\nX-UIDL: first\n\n1\n")
    (folder / "2.eml").write_bytes(b"Subject: two\n\n2\n")
    (folder / "3.eml").write_bytes(b"Subject: bad\n\nNUL \0\n")
    status = main(["import", "eml", "alice", str(folder), "--keep-uidl", "--config", str(config)])
    out = capsys.readouterr().out
    assert status == 1  # one message could not be imported
    assert "imported 2 of 3 messages" in out
    assert "kept their old unique-id: 1" in out
    assert "not imported (1):" in out
    assert f"message 3 ({folder / '3.eml'}): message contains a NUL byte at offset 18" in out
    assert uidls(config)[0] == "first"


def test_import_with_a_uidl_map_and_mboxo(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_alice(config)
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(
        b"From a Sat Jan  3 01:05:34 2026\nSubject: one\n\n>From x\n>>From y\n\n"
        b"From b Sat Jan  3 01:05:35 2026\nSubject: two\n\n"
    )
    uidl_map = tmp_path / "map.csv"
    uidl_map.write_text("number,uidl\n1,map-1\n2,map-2\n")
    args = ["import", "mbox", "alice", str(mbox), "--keep-uidl", "--uidl-map", str(uidl_map)]
    assert main([*args, "--mbox-variant", "mboxo", "--config", str(config)]) == 0
    assert uidls(config) == ["map-1", "map-2"]

    async def first(store: MailStore) -> bytes:
        [info, _] = await store.snapshot("alice")
        return await store.fetch("alice", info.uid) or b""

    assert in_store(config.parent / "data", first) == b"Subject: one\r\n\r\nFrom x\r\n>>From y\r\n"
    capsys.readouterr()


def test_import_of_unknown_user_and_missing_source_fail_clearly(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_alice(config)
    assert main(["import", "mbox", "nobody", str(tmp_path), "--config", str(config)]) == 1
    assert "no such user" in capsys.readouterr().err
    missing = tmp_path / "missing.mbox"
    assert main(["import", "mbox", "alice", str(missing), "--config", str(config)]) == 1
    assert "missing.mbox" in capsys.readouterr().err


def test_export_then_import_elsewhere_keeps_uidls(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill(store: MailStore) -> None:
        await store.add_user("alice", {})
        await store.add_user("bob", {})
        await store.deliver("alice", prepare(b"Subject: a\r\n\r\nx\r\n"))
        await store.deliver("alice", prepare(b"Subject: b\r\n\r\ny\r\n", legacy_uidl="kept"))

    in_store(config.parent / "data", fill)
    maildir = tmp_path / "export"
    assert main(["export", "alice", "maildir", str(maildir), "--config", str(config)]) == 0
    assert "exported 2 messages" in capsys.readouterr().out
    assert main(["export", "alice", "maildir", str(maildir), "--config", str(config)]) == 1
    assert "exists" in capsys.readouterr().err  # never overwritten
    args = ["import", "maildir", "bob", str(maildir), "--keep-uidl", "--config", str(config)]
    assert main(args) == 0
    assert uidls(config, "bob") == uidls(config, "alice") == ["1", "kept"]


def test_user_quota_sets_and_clears_e0003(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """E0003: the quota is inherited from the server setting unless the mailbox has one."""
    add_alice(config)
    assert main(["user", "quota", "alice", "2M", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "quota of alice: 2097152 octets (its own)\n"
    assert main(["user", "quota", "alice", "none", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "quota of alice: 5000 octets (the server default)\n"
    assert main(["user", "quota", "alice", "lots", "--config", str(config)]) == 1
    assert "not a size" in capsys.readouterr().err
    assert main(["user", "quota", "nobody", "1M", "--config", str(config)]) == 1


def test_expire_for_cron_e0005(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """E0005: ``popbox expire`` removes what the retention policy no longer keeps."""
    add_alice(config)
    assert main(["expire", "--config", str(config)]) == 0
    assert "no retention policy" in capsys.readouterr().out

    async def fill(store: MailStore) -> None:
        old = time.time() - 10 * 86400
        await store.deliver("alice", prepare(b"Subject: old\r\n\r\n", received_at=old))
        await store.deliver("alice", prepare(b"Subject: new\r\n\r\n"))

    in_store(config.parent / "data", fill)
    config.write_text(config.read_text() + "[retention]\nunretrieved_days = 7\n")
    assert main(["expire", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "alice\t1\nremoved 1 messages from 1 mailboxes\n"
    assert len(uidls(config)) == 1


def test_progress_bar_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = ProgressBar(quiet, "importing")
    bar(1, 2)
    bar.finish()
    assert quiet.getvalue() == ""  # StringIO is not a terminal
    shown = io.StringIO()
    bar = ProgressBar(shown, "importing", enabled=True, clock=iter(range(100)).__next__)
    bar(1, 4)
    bar(4, 4)
    bar.finish()
    assert shown.getvalue().endswith("\rimporting [" + "#" * 30 + "] 4/4 100%\n")
    assert "] 1/4  25%" in shown.getvalue()
