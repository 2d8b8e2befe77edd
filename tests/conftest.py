"""Fixtures shared by every test directory: TLS material and real popbox servers.

The servers themselves live in ``popbox_servers.py`` next to this file; the fixtures here
only start them and make sure they are stopped (and did not log an error) afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import krb5realm
from popbox_servers import (
    USERS,
    InProcessServer,
    ServeProcess,
    TlsFiles,
    config_mapping,
    make_tls_files,
    provision,
    toml_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from popbox.clock import ManualClock


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A trustme CA (``ca_file``) and a certificate for localhost/127.0.0.1 it signed."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start_pop3_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[Callable[..., InProcessServer]]:
    """Factory: ``start_pop3_server(pop3={...})`` starts an in-process server with USERS.

    ``pop3`` overrides keys of the ``[pop3]`` section, ``sections`` adds other sections;
    ``clock=ManualClock()`` makes time move only by ``server.advance``.
    Every server is stopped after the test, and the test fails if a session logged an
    error (a crash in the session code).
    """
    servers: list[InProcessServer] = []

    def start(
        pop3: Mapping[str, Any] | None = None,
        *,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        users: bool = True,
        clock: ManualClock | None = None,
    ) -> InProcessServer:
        data_dir = tmp_path_factory.mktemp("popbox-data")
        server = InProcessServer.start(data_dir, tls_files, pop3, sections, clock=clock)
        servers.append(server)
        if users:
            server.add_users(USERS)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        errors = [e for e in server.errors() if e.get("level") != "warning"]
        assert not errors, f"the server logged errors: {errors}"


@pytest.fixture
def pop3_server(start_pop3_server: Callable[..., InProcessServer]) -> InProcessServer:
    """An in-process server with the default settings and the users in ``USERS``."""
    return start_pop3_server()


@pytest.fixture
def start_popbox_serve(
    tmp_path: Path, tls_files: TlsFiles
) -> Iterator[Callable[..., tuple[ServeProcess, Path]]]:
    """Factory: provision a data dir, then run ``popbox serve --config FILE`` on port 0.

    ``start_popbox_serve(messages={"alice": [raw, ...]}, pop3={...})`` returns the running
    process (its ``addresses`` parsed from the ``listening`` lines) and the data dir.
    """
    processes: list[ServeProcess] = []

    def start(
        messages: Mapping[str, list[bytes]] | None = None,
        pop3: Mapping[str, Any] | None = None,
    ) -> tuple[ServeProcess, Path]:
        data_dir = tmp_path / f"serve-{len(processes)}"
        provision(data_dir, USERS, messages or {})
        config = data_dir / "popbox.toml"
        config.write_text(toml_text(config_mapping(data_dir, tls_files, pop3)), encoding="utf-8")
        process = ServeProcess(
            ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=data_dir / "stderr.log"
        )
        processes.append(process)
        process.wait_for_listeners({"pop3", "pop3s"})
        return process, data_dir

    yield start
    for process in processes:
        process.close()


@pytest.fixture(scope="session")
def kerberos_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[krb5realm.Realm]:
    """A throwaway MIT Kerberos realm with a KDC on 127.0.0.1 (tests/krb5realm.py)."""
    yield from krb5realm.session_realm(tmp_path_factory)
