"""A real OpenLDAP ``slapd`` on loopback ports, with an Active-Directory-like tree.

Theory of operation: ``Slapd.start(folder, tls)`` writes a ``slapd.conf`` (mdb database
in ``folder``, modules from the Debian package's folder), loads the tree below with
``slapadd`` while the server is down, then runs ``slapd -d 0`` in the foreground on two
ephemeral ports: ``ldap://`` (plaintext, StartTLS offered) and ``ldaps://``, both with a
certificate the test CA signed.  ``stop()``/``restart()`` end and start the same server
on the same ports with the same data, for the outage tests.

The tree imitates what an Exchange-replacement operator has in Active Directory: users
with ``uid``, ``mail``, ``userPrincipalName``, ``sAMAccountName`` and the
``userAccountControl`` flags (bit 0x2, ACCOUNTDISABLE, is set for ``bob``).  slapd's
bundled ``msuser.schema`` has these attributes "for informational purposes only",
without matching rules, so filters on them could not match; ``AD_SCHEMA`` declares the
three with Microsoft's OIDs and the matching rules AD applies (case-insensitive
strings, integers), plus a quota attribute and an auxiliary class of our own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popbox_servers import TlsFiles

__all__ = [
    "BASE_DN",
    "SERVICE_DN",
    "SERVICE_PASSWORD",
    "USERS",
    "LdapUser",
    "Slapd",
    "free_port",
    "ssha",
]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_DIR = Path("/etc/ldap/schema")

BASE_DN = "dc=example,dc=com"
SERVICE_DN = f"cn=popbox,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "service secret"
START_TIMEOUT = 20.0

AD_SCHEMA = """\
objectidentifier PopboxTest 1.3.6.1.4.1.4203.666.11.99
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( PopboxTest:1 NAME 'mailQuotaBytes'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( PopboxTest:2 NAME 'popboxTestAdUser' AUXILIARY
    MAY ( sAMAccountName $ userPrincipalName $ userAccountControl $ mailQuotaBytes ) )
"""


@dataclass(frozen=True, slots=True)
class LdapUser:
    uid: str
    password: str
    mail: str
    sam: str
    upn: str
    account_control: int = 512  # NORMAL_ACCOUNT
    quota_bytes: int | None = None

    @property
    def dn(self) -> str:
        return f"uid={self.uid},ou=people,{BASE_DN}"


USERS: dict[str, LdapUser] = {
    user.uid: user
    for user in (
        LdapUser("ann", "ann secret", "ann@example.com", "ann", "ann@example.com"),
        # 0x202 = NORMAL_ACCOUNT | ACCOUNTDISABLE
        LdapUser("bob", "bob secret", "bob@example.com", "bob", "bob@example.com", 0x202),
        LdapUser(
            "carol", "carol secret", "carol@example.com", "carol", "carol@example.com", 512, 5000
        ),
        # A name with filter metacharacters: matched literally, and by nothing else.
        LdapUser("st*r", "star secret", "star@example.com", "st*r", "star@example.com"),
    )
}


def ssha(password: str) -> str:
    """RFC 2307 ``{SSHA}`` (salted SHA-1), the scheme slapd's ``slappasswd`` writes."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - slapd's scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ldif(users: dict[str, LdapUser]) -> str:
    root = (
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
        "o: Example\n"
    )
    entries = [
        root,
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n",
        (
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\n"
            f"objectClass: simpleSecurityObject\ncn: popbox\n"
            f"userPassword: {ssha(SERVICE_PASSWORD)}\n"
        ),
    ]
    for user in users.values():
        quota = f"mailQuotaBytes: {user.quota_bytes}\n" if user.quota_bytes is not None else ""
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nobjectClass: popboxTestAdUser\n"
            f"uid: {user.uid}\ncn: {user.uid}\nsn: {user.uid}\nmail: {user.mail}\n"
            f"sAMAccountName: {user.sam}\nuserPrincipalName: {user.upn}\n"
            f"userAccountControl: {user.account_control}\n{quota}"
            f"userPassword: {ssha(user.password)}\n"
        )
    return "\n".join(entries)


def _slapd_conf(folder: Path, tls: TlsFiles) -> str:
    schemas = "\n".join(
        f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson")
    )
    return f"""\
{schemas}
include {folder / "ad.schema"}
modulepath {MODULE_PATH}
moduleload back_mdb
pidfile {folder / "slapd.pid"}
TLSCACertificateFile {tls.ca_file}
TLSCertificateFile {tls.cert_file}
TLSCertificateKeyFile {tls.key_file}
database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
directory {folder / "db"}
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by * none
"""


class Slapd:
    """One slapd process; ``uri``/``ldaps_uri`` reach it (StartTLS on ``uri``)."""

    def __init__(self, folder: Path, port: int, ldaps_port: int) -> None:
        self.folder = folder
        self.port = port
        self.ldaps_port = ldaps_port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        # The certificate names "localhost" and 127.0.0.1; either checks out.
        return f"ldaps://localhost:{self.ldaps_port}"

    @classmethod
    def start(cls, folder: Path, tls: TlsFiles, users: dict[str, LdapUser] = USERS) -> Slapd:
        (folder / "db").mkdir(parents=True)
        (folder / "ad.schema").write_text(AD_SCHEMA)
        conf = folder / "slapd.conf"
        conf.write_text(_slapd_conf(folder, tls))
        (folder / "tree.ldif").write_text(_ldif(users))
        subprocess.run(
            [SLAPADD, "-q", "-f", str(conf), "-l", str(folder / "tree.ldif")],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        server = cls(folder, free_port(), free_port())
        server.resume()
        return server

    def resume(self) -> None:
        """Start slapd (again) on this server's ports and wait until it accepts."""
        assert self._process is None
        log = (self.folder / "slapd.log").open("ab")
        self._process = subprocess.Popen(
            [
                SLAPD,
                "-d",
                "0",
                "-f",
                str(self.folder / "slapd.conf"),
                "-h",
                f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.folder / 'slapd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        self.stop()
        raise RuntimeError("slapd did not start listening in time")

    def stop(self) -> None:
        """End slapd (its data stays, for ``resume``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=START_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.resume()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder / "db", ignore_errors=True)
