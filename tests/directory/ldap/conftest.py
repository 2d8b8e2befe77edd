"""Fixtures for the LDAP directory tests: a real slapd and LdapDirectory factories.

``slapd`` is one server for the whole session (tests that only read); ``own_slapd`` is
a fresh one for a test that stops or restarts it.  ``make_directory(**keys)`` parses the
README's example table (``ldap_helpers.ldap_table``) with ``keys`` changed, and builds
an ``LdapDirectory`` whose log the test can read (``directory.log_sink.events()``); it
is closed after the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ldap_helpers import LoggedDirectory, ldap_table
from popbox.clock import SystemClock
from popbox.config.ldap import parse_ldap_directory
from popbox.observability.log import make_logger
from popbox_servers import LogSink
from slapd import Slapd

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from popbox.clock import Clock
    from popbox_servers import TlsFiles


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Slapd]:
    server = Slapd.start(tmp_path_factory.mktemp("slapd"), tls_files)
    yield server
    server.stop()


@pytest.fixture
def own_slapd(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Slapd]:
    server = Slapd.start(tmp_path / "slapd", tls_files)
    yield server
    server.stop()


@pytest.fixture
async def make_directory(
    slapd: Slapd, tls_files: TlsFiles
) -> AsyncIterator[Callable[..., LoggedDirectory]]:
    built: list[LoggedDirectory] = []

    def make(*, server: Slapd | None = slapd, clock: Clock | None = None, **keys: Any):
        table = ldap_table(server, tls_files.ca_file, **keys)
        settings = parse_ldap_directory(table, "corp")
        sink = LogSink()
        directory = LoggedDirectory(
            "corp",
            settings,
            clock=clock or SystemClock(),
            log=make_logger(json=True, level="debug", stream=sink),
        )
        directory.log_sink = sink
        built.append(directory)
        return directory

    yield make
    for directory in built:
        await directory.close()
