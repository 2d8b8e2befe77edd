"""The passwd-file directory: Dovecot's format, extra fields, edits, bad lines, domains."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from dovecot import doveadm_hash

from popbox.config.directory_sections import PasswdFileSettings
from popbox.directory import passwd_file
from popbox.directory.base import Account, LoginName, Status
from popbox.directory.passwd_file import PasswdFileDirectory
from popbox.observability.log import make_logger
from popbox_servers import LogSink

if TYPE_CHECKING:
    from pathlib import Path


def login(user: str) -> LoginName:
    local, _, domain = user.partition("@")
    return LoginName(raw=user, user=user, local=local, domain=domain)


def directory(path: str, log: LogSink | None = None, **settings: str) -> PasswdFileDirectory:
    logger = make_logger(json=True, stream=log or LogSink())
    return PasswdFileDirectory(
        "files", PasswdFileSettings(path, **settings), logger, fold_local=False
    )


def write(path: Path, *lines: str) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


async def test_dovecot_lines_with_extra_fields_give_the_accounts_they_describe(tmp_path):
    """Dovecot's passwd-file: user:password:uid:gid:gecos:home:shell:extra_fields."""
    users = tmp_path / "users"
    write(
        users,
        "# comment, then a blank line",
        "",
        f"ann@example.com:{doveadm_hash('SHA512-CRYPT', 'ann pw')}::::::quota_rule=*:storage=1G",
        f"bob@example.com:{doveadm_hash('BLF-CRYPT', 'bob pw')}:1000:1000::/home/bob::",
        f"cy@example.com:{doveadm_hash('SSHA256', 'cy pw')}::::::user=cyrus@example.com",
        f"old@example.com:{doveadm_hash('ARGON2ID', 'old pw')}::::::nologin reason=Left us",
        "lab@example.com:{PLAIN}lab pw::::::allow_nets=192.0.2.0/24,::1",
    )
    files = directory(str(users))
    ann = await files.authenticate(login("ann@example.com"), "ann pw", "127.0.0.1")
    assert ann.status is Status.OK
    assert ann.account == Account("ann@example.com", 1024**3)
    assert (await files.authenticate(login("bob@example.com"), "bob pw", "::1")).status is Status.OK
    cy = await files.authenticate(login("cy@example.com"), "cy pw", "127.0.0.1")
    assert cy.account == Account("cyrus@example.com")  # user= renames the mailbox
    old = await files.authenticate(login("old@example.com"), "old pw", "127.0.0.1")
    assert old.status is Status.DISABLED
    assert old.account is not None
    assert old.account.disabled_reason == "Left us"
    wrong_old = await files.authenticate(login("old@example.com"), "guess", "127.0.0.1")
    assert wrong_old.status is Status.WRONG  # no word of "disabled" without the password
    assert (await files.authenticate(login("lab@example.com"), "lab pw", "::1")).status is Status.OK
    outside = await files.authenticate(login("lab@example.com"), "lab pw", "198.51.100.7")
    assert outside.status is Status.WRONG
    assert "allow_nets" in outside.detail
    assert (await files.authenticate(login("ann@example.com"), "x", "::1")).status is Status.WRONG
    nobody = await files.authenticate(login("nobody@example.com"), "x", "::1")
    assert nobody.status is Status.UNKNOWN
    assert (await files.lookup(login("old@example.com"))).status is Status.DISABLED
    assert (await files.lookup(login("nobody@example.com"))).status is Status.UNKNOWN
    assert files.healthy()


async def test_quota_rules_read_as_dovecot_reads_them(tmp_path):
    """Dovecot: storage= is in kilobytes unless a unit follows; bytes= is octets; 0 is none."""
    users = tmp_path / "users"
    write(
        users,
        "a:{PLAIN}x::::::quota_rule=*:storage=100",
        "b:{PLAIN}x::::::userdb_quota_rule=*:storage=5M",
        "c:{PLAIN}x::::::quota_rule=*:bytes=12345",
        "d:{PLAIN}x::::::quota_rule=*:storage=0",
    )
    files = directory(str(users))
    quotas = []
    for name in "abcd":
        verdict = await files.lookup(login(name))
        assert verdict.account is not None
        quotas.append(verdict.account.quota_bytes)
    assert quotas == [100 * 1024, 5 * 1024**2, 12345, None]


async def test_a_malformed_line_is_named_with_file_and_line_and_others_keep_working(tmp_path):
    users = tmp_path / "users"
    write(
        users,
        "ann:{PLAIN}ann pw",
        "just-a-name-no-colon",
        "bob:{NOSUCH}abc",
        "cy:{SHA512-CRYPT}not-a-hash",
        "dee:{PLAIN}x::::::quota_rule=half",
        "ann:{PLAIN}second ann",
    )
    log = LogSink()
    files = directory(str(users), log)
    assert (await files.authenticate(login("ann"), "ann pw", "::1")).status is Status.OK
    skipped = {e["where"]: e["problem"] for e in log.events("passwd_file_line_skipped")}
    assert skipped == {
        f"{users}:2": "not of the form user:password[:...]",
        f"{users}:3": "unknown password scheme 'NOSUCH'",
        f"{users}:4": "SHA512-CRYPT value is not a sha512_crypt hash",
        f"{users}:5": "quota_rule 'half': expected *:storage=SIZE or *:bytes=N",
        f"{users}:6": "user ann is also on line 1",
    }
    # A user whose own line is broken is not told "wrong password", and is not logged in.
    bob = await files.authenticate(login("bob"), "abc", "::1")
    assert bob.status is Status.TEMPFAIL
    assert f"{users}:3" in bob.detail
    assert files.healthy()  # one bad line is no outage
    assert (await files.authenticate(login("ann"), "second ann", "::1")).status is Status.WRONG
    # Read once: the next login does not log the same lines again.
    await files.authenticate(login("ann"), "ann pw", "::1")
    assert len(log.events("passwd_file_line_skipped")) == 5


async def test_an_edited_file_is_read_again_without_a_restart(tmp_path):
    users = tmp_path / "users"
    write(users, "ann:{PLAIN}old")
    files = directory(str(users))
    assert (await files.authenticate(login("ann"), "old", "::1")).status is Status.OK
    # The same size and, on a coarse clock, the same mtime: the inode still differs.
    replacement = tmp_path / "users.new"
    write(replacement, "ann:{PLAIN}new", "bob:{PLAIN}bob")
    replacement.replace(users)
    assert (await files.authenticate(login("ann"), "old", "::1")).status is Status.WRONG
    assert (await files.authenticate(login("ann"), "new", "::1")).status is Status.OK
    # Edited in place: size and mtime change.
    with users.open("a", encoding="utf-8") as handle:
        handle.write("cy:{PLAIN}cy\n")
    stat = users.stat()
    os.utime(users, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert (await files.authenticate(login("cy"), "cy", "::1")).status is Status.OK


async def test_a_missing_or_unreadable_file_is_an_outage_that_ends_by_itself(tmp_path):
    users = tmp_path / "users"
    files = directory(str(users))
    verdict = await files.authenticate(login("ann"), "x", "::1")
    assert verdict.status is Status.TEMPFAIL
    assert "does not exist" in verdict.detail
    assert not files.healthy()
    write(users, "ann:{PLAIN}x")
    assert (await files.authenticate(login("ann"), "x", "::1")).status is Status.OK
    assert files.healthy()


async def test_one_file_per_domain_with_percent_d(tmp_path):
    (tmp_path / "example.com").mkdir()
    write(tmp_path / "example.com" / "passwd", "ann:{PLAIN}ann pw")
    files = directory(str(tmp_path / "%d" / "passwd"), username_format="%n")
    ann = await files.authenticate(login("ann@example.com"), "ann pw", "::1")
    assert ann.status is Status.OK
    assert ann.account == Account("ann")
    # A domain without a file is not served here (no outage); nor is a bare name.
    other = await files.authenticate(login("ann@example.org"), "ann pw", "::1")
    assert other.status is Status.UNKNOWN
    assert (await files.authenticate(login("ann"), "ann pw", "::1")).status is Status.UNKNOWN
    sneaky = await files.lookup(login("ann@../example.com"))
    assert sneaky.status is Status.UNKNOWN
    assert files.healthy()


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "BLF-CRYPT"])
async def test_an_unknown_user_is_checked_against_a_hash_of_the_file(tmp_path, scheme, monkeypatch):
    """V0009: the dummy check uses the scheme most of the file's users have."""
    users = tmp_path / "users"
    write(
        users, f"ann:{doveadm_hash(scheme, 'a')}", f"bob:{doveadm_hash(scheme, 'b')}", "c:{PLAIN}c"
    )
    files = directory(str(users))
    checked: list[str] = []
    real = passwd_file.schemes.verify

    def spy(stored, password):
        checked.append(stored.scheme)
        return real(stored, password)

    monkeypatch.setattr(passwd_file.schemes, "verify", spy)
    assert (await files.authenticate(login("ghost"), "a", "::1")).status is Status.UNKNOWN
    assert checked == [scheme]
