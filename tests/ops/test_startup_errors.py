"""A ``popbox`` command that cannot start says why in exactly one line on stderr and exits
1 (a service manager then restarts it), with one process or with workers.

Issue 15 item 3 and STYLE section 5: "a process that cannot start prints exactly one line
naming the file, key or address".  With several workers the supervisor checks what it
can before any worker starts (server/startup.py), and a worker that still cannot start
reports one line that the supervisor prints once.  Every case runs the real ``popbox``
command as a subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from popbox.config import from_mapping
from popbox.node.control import encode_config
from popbox_servers import config_mapping, popbox_executable, toml_text

TIMEOUT = 60


def run_popbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [popbox_executable(), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def serve(tmp_path, tls_files, sections=None, pop3=None) -> subprocess.CompletedProcess[str]:
    mapping = config_mapping(tmp_path / "data", tls_files, pop3, sections)
    mapping["lmtp"] = {"listen": [], **(sections or {}).get("lmtp", {})}
    mapping["tls"] = {**mapping["tls"], **(sections or {}).get("tls", {})}
    config = tmp_path / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")
    return run_popbox("serve", "--config", str(config))


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command that failed with status 1."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


# -- the configuration file -----------------------------------------------------------------


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_config_file_that_is_not_utf8_is_one_line(tmp_path, command):
    """TOML 1.0: "A TOML file must be a valid UTF-8 encoded Unicode document"."""
    config = tmp_path / "popbox.toml"
    config.write_bytes(b'data_dir = "data"\n[pop3]\nbanner = "caf\xe9"\n')

    line = one_line(run_popbox(*command, "--config", str(config)))

    assert (
        line == f"popbox: {config}: not UTF-8 text (byte 0xe9 on line 3); TOML files must be UTF-8"
    )


# -- the store ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_store_down_at_start(tmp_path, tls_files, workers):
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/popbox"
    result = serve(
        tmp_path,
        tls_files,
        {"storage": {"backend": "postgresql", "dsn": dsn}, "server": {"workers": workers}},
    )

    line = one_line(result)

    assert line.startswith("popbox: cannot serve: storage.dsn: ")
    assert "unreachable" in line or "unavailable" in line


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_database_is_named_once(tmp_path, tls_files, workers):
    database = tmp_path / "data" / "popbox.sqlite3"
    database.parent.mkdir()
    database.write_bytes(b"this is not an SQLite database\n" * 512)

    line = one_line(serve(tmp_path, tls_files, {"server": {"workers": workers}}))

    assert line == (
        f"popbox: cannot serve: storage: {database}: "
        "the mail database needs an administrator (SQLITE_NOTADB)"
    )


# -- the listeners --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use_names_the_address(tmp_path, tls_files, workers):
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

    assert one_line(result) == (
        f"popbox: cannot serve: pop3.listen: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_port_in_use_names_the_address(tmp_path, tls_files, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        sections = {"server": {"workers": workers, "metrics_listen": address}}
        result = serve(tmp_path, tls_files, sections)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (
            f"popbox: cannot serve: server.metrics_listen: cannot listen on {address}: "
            "Address already in use"
        )
    ]


def test_lmtp_path_that_is_not_a_socket_names_the_address(tmp_path, tls_files):
    path = tmp_path / "not-a-socket"
    path.mkdir()
    result = serve(
        tmp_path, tls_files, {"server": {"workers": 2}, "lmtp": {"listen": [f"unix:{path}"]}}
    )

    assert one_line(result) == (
        f"popbox: cannot serve: lmtp.listen: cannot listen on unix:{path}: "
        f"{path} exists and is not a socket"
    )


# -- TLS certificate and key ----------------------------------------------------------------


def _tls_cases(tmp_path, tls_files) -> dict[str, tuple[dict[str, str], str]]:
    """Per bad-file case: the [tls] keys that make it, and the line popbox must print."""
    cert = str(tls_files.cert_file)
    missing = tmp_path / "missing.pem"
    folder = tmp_path / "folder"
    folder.mkdir()
    text = tmp_path / "text.pem"
    text.write_text("not a certificate\n")
    other = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other))
    encrypted = tmp_path / "encrypted-key.pem"
    loaded = serialization.load_pem_private_key(tls_files.key_file.read_bytes(), password=None)
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {
        "missing certificate": (
            {"cert_file": str(missing)},
            f"tls.cert_file: {missing} does not exist or is not a file",
        ),
        "missing key": (
            {"key_file": str(missing)},
            f"tls.key_file: {missing} does not exist or is not a file",
        ),
        "directory certificate": (
            {"cert_file": str(folder)},
            f"tls.cert_file: {folder} is a directory, not a file",
        ),
        "directory key": (
            {"key_file": str(folder)},
            f"tls.key_file: {folder} is a directory, not a file",
        ),
        "certificate not PEM": (
            {"cert_file": str(text)},
            (
                f"TLS certificate {text}: not a PEM certificate "
                "(a file starting with -----BEGIN CERTIFICATE----- is expected)"
            ),
        ),
        "key not PEM": (
            {"key_file": str(text)},
            (
                f"TLS key {text}: not a PEM private key "
                "(a file starting with -----BEGIN PRIVATE KEY----- is expected)"
            ),
        ),
        "mismatched key": (
            {"key_file": str(other)},
            (
                f"TLS key {other} does not belong to the certificate {cert} "
                "(their public keys differ)"
            ),
        ),
        "passphrase key": (
            {"key_file": str(encrypted)},
            (
                f"TLS key {encrypted} is encrypted with a passphrase; popbox needs an "
                "unencrypted key (protect it with file permissions instead)"
            ),
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing certificate",
        "missing key",
        "directory certificate",
        "directory key",
        "certificate not PEM",
        "key not PEM",
        "mismatched key",
        "passphrase key",
    ],
)
def test_unusable_tls_files_are_one_line_from_the_supervisor(tmp_path, tls_files, case):
    """With two workers each used to print its own traceback (41-99 lines); the
    supervisor now loads the files itself before starting any worker."""
    tls, expected = _tls_cases(tmp_path, tls_files)[case]

    result = serve(tmp_path, tls_files, {"server": {"workers": 2}, "tls": tls})

    assert one_line(result) == f"popbox: cannot serve: {expected}"


def test_config_check_names_a_key_that_does_not_belong_to_the_certificate(tmp_path, tls_files):
    tls, expected = _tls_cases(tmp_path, tls_files)["mismatched key"]
    mapping = config_mapping(tmp_path / "data", tls_files)
    mapping["tls"] = {**mapping["tls"], **tls}
    config = tmp_path / "popbox.toml"
    config.write_text(toml_text(mapping), encoding="utf-8")

    assert one_line(run_popbox("config", "check", "--config", str(config))) == f"popbox: {expected}"


# -- import --uidl-map ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"key,uidl\n1,abc\n2,caf\xe9\n", "3: not UTF-8 text (byte 0xe9)"),
        (b'1,"abc\n', "1: not valid CSV: unexpected end of data"),
        (b'1,"ab"c\n', "1: not valid CSV: ',' expected after '\"'"),
        (b"1,abc,extra\n", "1: expected two fields: key,uidl"),
    ],
    ids=["not-utf8", "unterminated-quote", "text-after-quote", "three-fields"],
)
def test_bad_uidl_map_is_one_line(tmp_path, content, problem):
    mbox = tmp_path / "mail.mbox"
    mbox.write_bytes(b"From a@example.com Thu Jan  1 00:00:00 2026\nSubject: x\n\nbody\n")
    uidl_map = tmp_path / "map.csv"
    uidl_map.write_bytes(content)
    config = tmp_path / "popbox.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")

    result = run_popbox(
        "import", "mbox", "alice", str(mbox), "--uidl-map", str(uidl_map), "--config", str(config)
    )

    assert one_line(result) == f"popbox: --uidl-map: {uidl_map}:{problem}"


# -- a worker that cannot start ----------------------------------------------------------------


def test_worker_that_cannot_start_reports_one_line_and_prints_nothing(tmp_path, tls_files):
    """The worker side of the supervisor's one line: the failure travels over the control
    channel (server/control.py), here answered by the test in the supervisor's place."""
    missing = tmp_path / "removed-after-the-supervisor-checked.pem"
    mapping = config_mapping(tmp_path / "data", tls_files)
    mapping["tls"] = {"cert_file": str(missing), "key_file": str(tls_files.key_file)}
    config = from_mapping(mapping)
    ours, theirs = socket.socketpair()
    argv = [sys.executable, "-m", "popbox.node.worker", "--index", "0"]
    argv += ["--supervisor", str(os.getpid()), "--control", str(theirs.fileno())]
    worker = subprocess.Popen(
        argv, pass_fds=[theirs.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    theirs.close()
    try:
        ours.settimeout(TIMEOUT)
        channel = ours.makefile("rwb")
        hello = json.loads(channel.readline())
        assert hello["op"] == "hello"
        channel.write(json.dumps({"re": hello["id"], "config": encode_config(config)}).encode())
        channel.write(b"\n")
        channel.flush()
        failed = json.loads(channel.readline())
        channel.write(json.dumps({"re": failed["id"]}).encode() + b"\n")
        channel.flush()
        status = worker.wait(TIMEOUT)
        stdout, stderr = worker.communicate(timeout=TIMEOUT)
    finally:
        if worker.poll() is None:
            worker.kill()
        ours.close()

    assert failed["op"] == "failed"
    assert failed["error"] == f"tls.cert_file: {missing} does not exist or is not a file"
    assert status == 1
    assert (stdout, stderr) == (b"", b"")
