"""Directory logins through the real server: timing per backend, import, mechanisms."""

from __future__ import annotations

import base64
import statistics
import subprocess
import time
from typing import TYPE_CHECKING

from dovecot import DOVEADM, doveadm_hash

from popbox.directory.internal import IMPORTED
from popbox_servers import popbox_executable

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "ann secret"


def plain(user: str, password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()) + b"\r\n"


def passwd_server(auth_server, path: Path, **auth):
    return auth_server(
        {"ip_lockout_failures": 0, "user_lockout_failures": 0, **auth},
        pop3={"auth_failure_delay": 0.0, "max_auth_failures": 1000},
        sections={
            "directory": [
                {"name": "files", "type": "passwd-file", "path": str(path)},
                {"name": "local", "type": "internal"},
            ]
        },
    )


def test_passwd_file_unknown_user_costs_what_a_wrong_password_costs_v0009(auth_server, tmp_path):
    """V0009 for the passwd-file backend, by the method of the internal store's test
    (tests/auth/test_bruteforce_server.py): interleaved attempts, medians and the median
    paired difference within a quarter of the check's cost.  BLF-CRYPT at cost 10 makes
    the check expensive enough to measure; an unknown user is checked against the file's
    own hash, and then against the internal store's dummy too, which a wrong password
    from the passwd-file waits for."""
    users = tmp_path / "users"
    bcrypt_10 = subprocess.run(
        [DOVEADM, "-c", "/dev/null", "pw", "-s", "BLF-CRYPT", "-r", "10", "-p", PASSWORD],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    users.write_text(f"ann:{bcrypt_10}\n", encoding="utf-8")
    server = passwd_server(auth_server, users)
    client = server.connect(tls=True)
    client.ask(plain("warm", "up"))
    known: list[float] = []
    unknown: list[float] = []
    for n in range(20):
        for user, sample in (("ann", known), (f"ghost{n}", unknown))[:: 1 if n % 2 else -1]:
            started = time.perf_counter()
            assert client.ask(plain(user, "wrong password")).startswith(b"-ERR [AUTH]")
            sample.append(time.perf_counter() - started)
    cost = statistics.median(known)
    assert cost > 0.02  # bcrypt at cost 10 ran
    tolerance = 0.25 * cost
    paired = [k - u for k, u in zip(known, unknown, strict=True)]
    assert abs(statistics.median(paired)) < tolerance, paired
    assert abs(cost - statistics.median(unknown)) < tolerance, (known, unknown)


def test_scram_for_a_passwd_file_user_fails_and_the_log_says_why(auth_server, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"ann:{doveadm_hash('SHA512-CRYPT', PASSWORD)}\n", encoding="utf-8")
    server = passwd_server(auth_server, users)
    client = server.connect(tls=True)
    first = base64.b64encode(b"n,,n=ann,r=abcdefghijklmnop")
    assert client.ask(b"AUTH SCRAM-SHA-256 " + first + b"\r\n").startswith(b"+ ")
    proof = base64.b64encode(b"c=biws,r=x,p=" + base64.b64encode(b"\0" * 32))
    assert client.ask(proof + b"\r\n").startswith(b"-ERR")
    [event] = server.log.events("login_mechanism_needs_stored_secret")
    assert (event["user"], event["mechanism"], event["directory"]) == (
        "ann",
        "SCRAM-SHA-256",
        "files",
    )
    assert client.ask(plain("ann", PASSWORD)).startswith(b"+OK")  # what works instead


def test_imported_users_keep_their_hash_and_are_rehashed_at_first_login(auth_server, tmp_path):
    """popbox user import passwd-file, then a login: verified in the original scheme,
    then stored as argon2id (rehash_on_login); nologin arrives disabled."""
    users = tmp_path / "users"
    users.write_text(
        f"ann:{doveadm_hash('SHA512-CRYPT', PASSWORD)}::::::quota_rule=*:storage=2M\n"
        f"old:{doveadm_hash('SSHA512', 'old pw')}::::::nologin reason=Gone\n"
        "broken-line\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    config = tmp_path / "popbox.toml"
    config.write_text(f'data_dir = "{data}"\n', encoding="utf-8")
    result = subprocess.run(
        [popbox_executable(), "user", "import", "passwd-file", str(users), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1  # one line skipped
    assert f"{users}:3: skipped: not of the form user:password" in result.stderr
    assert "2 of 2 users imported" in result.stdout
    listed = subprocess.run(
        [popbox_executable(), "user", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"ann\tquota={2 * 1024**2}" in listed
    # The imported records, served by an in-process server over the same kind of store.
    server = auth_server()
    ann_hash = doveadm_hash("SHA512-CRYPT", PASSWORD)
    server.call(server.store.add_user("ann", {IMPORTED: ann_hash}))
    client = server.connect(tls=True)
    assert client.ask(plain("ann", "wrong")).startswith(b"-ERR [AUTH]")
    record = server.call(server.store.get_user("ann"))
    assert record is not None
    assert dict(record.verifiers) == {IMPORTED: ann_hash}  # a wrong password changes nothing
    assert client.ask(plain("ann", PASSWORD)).startswith(b"+OK")
    record = server.call(server.store.get_user("ann"))
    assert record is not None
    assert set(record.verifiers) == {"argon2id"}
    assert record.verifiers["argon2id"].startswith("$argon2id$")
    again = server.connect(tls=True)
    assert again.ask(plain("ann", PASSWORD)).startswith(b"+OK")


def test_disable_and_enable_from_the_command_line(auth_server, tmp_path):
    data = tmp_path / "data"
    config = tmp_path / "popbox.toml"
    config.write_text(f'data_dir = "{data}"\n', encoding="utf-8")

    def popbox(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [popbox_executable(), *args, "--config", str(config)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert popbox("user", "add", "ann", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    done = popbox("user", "disable", "ann", "--reason", "on leave")
    assert (done.returncode, done.stdout) == (0, "user ann disabled\n")
    missing = popbox("user", "disable", "nobody")
    assert missing.returncode == 1
    assert "no such user" in missing.stderr
    assert popbox("user", "list").stdout.startswith("ann\t")
    # What a disabled record means to a login, in process: the reason only with the
    # right password.
    server = auth_server()
    server.add_user("ann", PASSWORD)
    server.call(server.store.set_disabled("ann", "on leave"))
    client = server.connect(tls=True)
    assert client.ask(plain("ann", "guess")) == b"-ERR [AUTH] authentication failed\r\n"
    assert client.ask(plain("ann", PASSWORD)) == b"-ERR [SYS/PERM] account disabled: on leave\r\n"
    assert popbox("user", "enable", "ann").stdout == "user ann enabled\n"
    server.call(server.store.set_disabled("ann", None))
    assert client.ask(plain("ann", PASSWORD)).startswith(b"+OK")
