"""``popbox deliver`` as an MDA: a procmail/Exim-style pipe, sysexits, quotas (E0004).

Each test runs the real command in a subprocess with the message on stdin, the way
Postfix's ``mailbox_command``/``pipe(8)``, Exim's pipe transport or procmail run it.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

from popbox.store.message import unstuff
from popbox_cli import in_store, popbox_command

if TYPE_CHECKING:
    from pathlib import Path

    from popbox.store.base import MailStore

TIMEOUT = 30
MESSAGE = b"From: a@example.org\nSubject: piped\n\nbody line\n.dot line\n"


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "popbox.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n{extra}')
    return config


def add_users(tmp_path: Path, *names: str, quota: int | None = None) -> None:
    async def work(store: MailStore) -> None:
        for name in names:
            await store.add_user(name, {}, quota)

    in_store(tmp_path / "data", work)


def messages(tmp_path: Path, name: str) -> list[bytes]:
    async def work(store: MailStore) -> list[bytes]:
        return [unstuff(await store.fetch(name, i.uid) or b"") for i in await store.snapshot(name)]

    result = in_store(tmp_path / "data", work)
    assert isinstance(result, list)
    return result


def deliver(
    config: Path, *names: str, message: bytes = MESSAGE
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [popbox_command(), "deliver", "--config", str(config), *names],
        input=message,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_delivered_message_exits_0_and_is_stored_in_crlf_form_c0011(tmp_path: Path) -> None:
    """Exit 0 only once the message is stored; bare LF becomes CRLF (C0011)."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice", "bob")
    done = deliver(config, "alice", "bob")
    assert done.returncode == 0, done.stderr
    expected = MESSAGE.replace(b"\n", b"\r\n")
    assert messages(tmp_path, "alice") == messages(tmp_path, "bob") == [expected]


def test_sysexits_for_unknown_user_nul_and_unavailable_store(tmp_path: Path) -> None:
    """DESIGN section 5: 67 no such user; 65 for a NUL byte (C0011); 75 try later."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    nobody = deliver(config, "nobody")
    assert nobody.returncode == 67
    assert b"nobody: no such user" in nobody.stderr
    nul = deliver(config, "alice", message=b"Subject: x\n\nNUL \0 here\n")
    assert nul.returncode == 65
    assert b"NUL byte at offset 16" in nul.stderr
    assert messages(tmp_path, "alice") == []
    # A data_dir that cannot be created: the store is unavailable, the MTA retries.
    blocked = tmp_path / "elsewhere"
    blocked.mkdir()
    (blocked / "data").write_text("a file where the data directory should be")
    unavailable = deliver(write_config(blocked), "alice")
    assert unavailable.returncode == 75
    assert b"store unavailable" in unavailable.stderr


def test_message_over_max_message_size_exits_65_and_stores_nothing(tmp_path: Path) -> None:
    """DESIGN s4 "Limits": the ``[lmtp] max_message_size`` LMTP enforces (552 5.3.4)
    holds for the MDA too: 60 MiB against the default 50 MiB is refused as unacceptable
    (65), and nothing is stored."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    big = b"Subject: big\n\n" + b"x" * 76 + b"\n"
    refused = deliver(config, "alice", message=big * (60 * 1024 * 1024 // len(big)))
    assert refused.returncode == 65, refused.stderr
    assert refused.stderr == b"popbox deliver: refused: larger than 52428800 octets\n"
    assert messages(tmp_path, "alice") == []


def test_max_message_size_counts_the_message_not_the_envelope_line(tmp_path: Path) -> None:
    """Exactly the limit is accepted, one octet more refused; the MTA's mbox "From " line
    is framing and not counted (LMTP counts only the DATA)."""
    config = write_config(tmp_path, "[lmtp]\nmax_message_size = 1000\n")
    add_users(tmp_path, "alice")
    exact = b"Subject: s\n\n" + b"y" * (1000 - 13) + b"\n"
    assert len(exact) == 1000
    envelope = b"From a@example.org  Mon Nov 23 10:00:00 2026\n"
    assert deliver(config, "alice", message=envelope + exact).returncode == 0
    assert deliver(config, "alice", message=exact + b"z").returncode == 65
    assert messages(tmp_path, "alice") == [exact.replace(b"\n", b"\r\n")]


def test_names_of_one_mailbox_get_one_copy_as_over_lmtp_rfc2033_s4_2(tmp_path: Path) -> None:
    """As LMTP stores one copy for RCPTs that name one mailbox (alice and
    alice@example.com), so does ``deliver NAME nobody NAME``; the unknown name still
    makes the exit status 67."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice", "bob")
    done = deliver(config, "alice", "nobody", "alice", "alice@example.com", "bob")
    assert done.returncode == 67
    assert done.stderr == b"popbox deliver: nobody: no such user\n"
    assert done.stdout.count(b"delivered to alice") == 1
    assert len(messages(tmp_path, "alice")) == 1
    assert len(messages(tmp_path, "bob")) == 1


def test_mbox_envelope_line_from_the_mta_is_framing_not_a_header(tmp_path: Path) -> None:
    """Postfix local(8) and procmail start the message with "From sender date"."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    done = deliver(
        config, "alice", message=b"From a@example.org  Mon Nov 23 10:00:00 2026\n" + MESSAGE
    )
    assert done.returncode == 0
    assert messages(tmp_path, "alice") == [MESSAGE.replace(b"\n", b"\r\n")]


def test_over_quota_is_temporary_or_permanent_and_stores_nothing_e0004(tmp_path: Path) -> None:
    """E0004: refused with a clear error and nothing lost: 75 keeps it queued at the MTA,
    73 (with over_quota = "permanent") makes it bounce."""
    config = write_config(tmp_path, "[quota]\ndefault_quota = 100\n")
    add_users(tmp_path, "alice")
    assert deliver(config, "alice").returncode == 0
    another = MESSAGE + b"another message\n"  # the same one again is a retry: see test_dedup
    full = deliver(config, "alice", message=another)
    assert full.returncode == 75
    assert b"alice: mailbox full" in full.stderr
    config = write_config(
        tmp_path, '[quota]\ndefault_quota = 100\n[lmtp]\nover_quota = "permanent"\n'
    )
    assert deliver(config, "alice", message=another).returncode == 73
    assert len(messages(tmp_path, "alice")) == 1


def test_quota_warning_is_delivered_once_by_the_mda_e0004(tmp_path: Path) -> None:
    """E0004: crossing the warning threshold puts one warning into the maildrop."""
    config = write_config(tmp_path, "[quota]\nwarning_percent = 10\n")
    add_users(tmp_path, "alice", quota=10_000)
    big = MESSAGE + b"x" * 400 + b"\n"  # 3 of them cross 1000 octets, 10 % of the quota
    for n in range(5):  # five messages, not one retried (test_dedup): each its own line
        message = big + b"%d\n" % n
        assert deliver(config, "alice", message=message).returncode == 0
    stored = messages(tmp_path, "alice")
    warnings = [index for index, m in enumerate(stored) if b"Auto-Submitted: auto-gen" in m]
    assert warnings == [3]  # right after the third message, and only once
    assert b"Subject: Your mailbox is 13% full" in stored[3]


def test_procmail_style_shell_pipe_passes_the_exit_status(tmp_path: Path) -> None:
    """A pipe transport runs a shell command line; its status is what the MTA sees."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    source = tmp_path / "msg"
    source.write_bytes(MESSAGE)
    command = f"cat {source} | {popbox_command()} deliver --config {config} alice"
    assert subprocess.run(["/bin/sh", "-c", command], timeout=TIMEOUT, check=False).returncode == 0
    command = f"cat {source} | {popbox_command()} deliver --config {config} nobody"
    done = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 67
    assert len(messages(tmp_path, "alice")) == 1


@pytest.mark.parametrize("count", [5])
def test_concurrent_mda_processes_store_every_message_with_distinct_uids(
    tmp_path: Path, count: int
) -> None:
    """Several MTA deliveries at once (several processes on one SQLite file): C0007."""
    config = write_config(tmp_path)
    add_users(tmp_path, "alice")
    processes = [
        subprocess.Popen(
            [popbox_command(), "deliver", "--config", str(config), "alice"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    for n, process in enumerate(processes):  # distinct messages: none is a retry
        process.communicate(MESSAGE + b"message %d\n" % n, timeout=TIMEOUT)
    assert [p.returncode for p in processes] == [0] * count
    assert len(messages(tmp_path, "alice")) == count
