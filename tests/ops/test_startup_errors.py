"""`popbox serve` that cannot start says why in one line and exits 1 (a service manager
then restarts it), with one process or with workers."""

from __future__ import annotations

import socket
import subprocess

import pytest

from popbox_servers import config_mapping, popbox_executable, toml_text


def serve(tmp_path, tls_files, sections, pop3=None) -> subprocess.CompletedProcess[str]:
    mapping = config_mapping(tmp_path, tls_files, pop3, sections)
    mapping["lmtp"] = {"listen": []}
    config = tmp_path / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    return subprocess.run(
        [popbox_executable(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


@pytest.mark.parametrize("workers", [1, 2])
def test_store_down_at_start(tmp_path, tls_files, workers):
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/popbox"
    result = serve(
        tmp_path,
        tls_files,
        {"storage": {"backend": "postgresql", "dsn": dsn}, "server": {"workers": workers}},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("popbox: cannot serve: ")
    if workers == 1:
        assert "unreachable" in last or "unavailable" in last
    else:
        assert "before it was ready" in last
    assert "listening" not in result.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use(tmp_path, tls_files, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(
            tmp_path,
            tls_files,
            {"server": {"workers": workers}},
            pop3={"listen": [f"127.0.0.1:{port}"]},
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("popbox: cannot serve: [Errno 98]")
