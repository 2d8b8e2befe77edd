"""A throwaway MIT Kerberos realm for the GSSAPI tests: a KDC on 127.0.0.1, in a temp dir.

Theory of operation: ``Realm.create`` writes a kdc.conf and a krb5.conf under the given
directory (found through KRB5_KDC_PROFILE and KRB5_CONFIG, so nothing in /etc is read or
touched), creates the database with ``kdb5_util``, adds principals with ``kadmin.local``,
exports the service key and each user's key to keytabs, and starts ``krb5kdc`` in the
foreground on an ephemeral port.  Users get tickets with ``kinit -k`` from their keytab,
into a credential cache file of their own.  ``close`` stops the KDC.

The whole thing takes well under a second; ``session_realm`` (the ``kerberos_realm``
fixture of tests/conftest.py) makes one for the test session and points this process's
Kerberos library at it, because an in-process server reads KRB5_CONFIG when it accepts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

REALM = "TEST.POPBOX"
SERVICE = "pop/localhost"  # what clients ask for when told to connect to "localhost"
TIMEOUT = 30.0
# Debian installs the KDC programs in sbin, which a non-root PATH may lack.
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")

PROGRAMS = ("kdb5_util", "kadmin.local", "krb5kdc", "kinit")
# Principals every GSSAPI test may use: alice and bob have mailboxes, carol has none.
PRINCIPALS = {"alice": "alice-krb5-pw", "bob": "bob-krb5-pw", "carol": "carol-krb5-pw"}


def find_program(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def _free_port() -> int:
    # The KDC binds the port itself a moment later; another process taking it in
    # between is possible but unlikely on a test machine, and fails loudly (no KDC).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Realm:
    directory: Path
    port: int
    service_keytab: Path
    kdc: subprocess.Popen[bytes] | None = None
    user_keytabs: dict[str, Path] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The variables a Kerberos program (client or server) needs to use this realm."""
        return {
            "KRB5_CONFIG": str(self.directory / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf"),
            "KRB5RCACHEDIR": str(self.directory),
        }

    @classmethod
    def create(cls, directory: Path, users: Mapping[str, str]) -> Realm:
        """A running realm with ``users`` (name → password) and the POP service."""
        realm = cls(directory, _free_port(), directory / "service.keytab")
        realm._write_configs()
        realm._run("kdb5_util", "create", "-s", "-P", "master-password", "-r", REALM)
        for user, password in users.items():
            realm.add_user(user, password)
        realm.kadmin(f"addprinc -randkey {SERVICE}")
        realm.kadmin(f"ktadd -k {realm.service_keytab} {SERVICE}")
        realm._start_kdc()
        return realm

    def add_user(self, user: str, password: str) -> Path:
        keytab = self.directory / f"{user.replace('/', '_')}.keytab"
        self.kadmin(f"addprinc -pw {password} {user}")
        self.kadmin(f"ktadd -k {keytab} -norandkey {user}")
        self.user_keytabs[user] = keytab
        return keytab

    def kinit(self, user: str, ccache: Path) -> dict[str, str]:
        """Get ``user`` a TGT in ``ccache``; returns the environment for a client."""
        env = {**os.environ, **self.env, "KRB5CCNAME": f"FILE:{ccache}"}
        self._run("kinit", "-k", "-t", str(self.user_keytabs[user]), user, env=env)
        return env

    def kadmin(self, query: str) -> None:
        # kadmin.local runs one -q per invocation (a second -q replaces the first).
        self._run("kadmin.local", "-r", REALM, "-q", query)

    def close(self) -> None:
        if self.kdc is not None and self.kdc.poll() is None:
            self.kdc.terminate()
            try:
                self.kdc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kdc.kill()
                self.kdc.wait(TIMEOUT)
        self.kdc = None

    def _run(self, program: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        path = find_program(program)
        assert path is not None, f"{program} is not installed: run scripts/setup"
        result = subprocess.run(
            [path, *args],
            env=dict(env or {**os.environ, **self.env}),
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        assert result.returncode == 0, f"{program} {' '.join(args)} failed: {output}"
        assert "does not exist" not in output, output  # kadmin.local exits 0 on errors

    def _write_configs(self) -> None:
        d = self.directory
        (d / "kdc.conf").write_text(
            f"""[kdcdefaults]
 kdc_listen = 127.0.0.1:{self.port}
 kdc_tcp_listen = 127.0.0.1:{self.port}
[realms]
 {REALM} = {{
  database_name = {d}/principal
  key_stash_file = {d}/stash
  acl_file = {d}/kadm5.acl
  max_life = 1h
  supported_enctypes = aes256-cts-hmac-sha1-96:normal
 }}
[logging]
 kdc = FILE:{d}/kdc.log
 admin_server = FILE:{d}/kadmin.log
 default = FILE:{d}/krb5lib.log
""",
            encoding="utf-8",
        )
        # No DNS: host names are used as given ("localhost" stays localhost), and the
        # KDC is found from this file only.
        (d / "krb5.conf").write_text(
            f"""[libdefaults]
 default_realm = {REALM}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 dns_canonicalize_hostname = false
 rdns = false
 udp_preference_limit = 1
[realms]
 {REALM} = {{
  kdc = 127.0.0.1:{self.port}
 }}
[domain_realm]
 localhost = {REALM}
""",
            encoding="utf-8",
        )

    def _start_kdc(self) -> None:
        path = find_program("krb5kdc")
        assert path is not None, "krb5kdc is not installed: run scripts/setup"
        log = (self.directory / "krb5kdc.out").open("wb")
        self.kdc = subprocess.Popen(
            [path, "-n", "-r", REALM, "-P", str(self.directory / "kdc.pid")],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert self.kdc.poll() is None, (self.directory / "krb5kdc.out").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        raise AssertionError(f"the KDC did not listen on 127.0.0.1:{self.port}")


def session_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """Create the realm, export its environment to this process, and tear both down."""
    missing = [name for name in PROGRAMS if find_program(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run scripts/setup (CI installs them)")
    realm = Realm.create(tmp_path_factory.mktemp("krb5"), PRINCIPALS)
    saved = {key: os.environ.get(key) for key in realm.env}
    os.environ.update(realm.env)
    try:
        yield realm
    finally:
        realm.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
