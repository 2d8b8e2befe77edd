"""``popbox serve`` with an ACME certificate from Pebble, as an operator runs it.

RFC 8555 (issuance and renewal) and RFC 8314 (implicit TLS on the POP3S port): the
certificate is obtained before the listeners come up, renewed before it expires and
installed without a restart (sessions open meanwhile carry on; new handshakes see the
new certificate in every worker); a CA that is down at renewal time leaves the old
certificate in use, a warning in the log and a failure in the metrics.  Bad settings
stop the start with one line naming the key, never a traceback.
"""

from __future__ import annotations

import json
import poplib
import socket
import ssl
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING, Any

from cryptography import x509
from pebble import DOMAIN, acme_tls, free_port, sample

from popbox_servers import (
    USERS,
    ServeProcess,
    config_mapping,
    popbox_executable,
    provision,
    toml_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pebble import Pebble

    from popbox_servers import TlsFiles

TIMEOUT = 10.0
WAIT = 90.0  # seconds for a renewal, a few Pebble round trips, on a loaded machine


def write_config(tmp_path: Path, tls_files: TlsFiles, tls: dict[str, Any], **server: Any) -> Path:
    data_dir = tmp_path / "data"
    provision(data_dir, USERS, {"alice": [b"Subject: hi\r\n\r\nhello\r\n"]})
    mapping = config_mapping(
        data_dir, tls_files, sections={"server": {"json_logs": True, **server}}
    )
    mapping["tls"] = tls
    mapping["lmtp"] = {"listen": []}
    path = tmp_path / "popbox.toml"
    path.write_text(toml_text(mapping), encoding="utf-8")
    return path


def serve(tmp_path: Path, config: Path, kinds: set[str]) -> ServeProcess:
    process = ServeProcess(
        ["serve", "--config", str(config)], cwd=tmp_path, stderr_path=tmp_path / "stderr.log"
    )
    process.wait_for_listeners(kinds, timeout=WAIT)
    return process


def events(process: ServeProcess, name: str) -> list[dict[str, Any]]:
    found = []
    for line in process.stderr().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


def wait_event(process: ServeProcess, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while not (found := events(process, name)):
        assert process.process.poll() is None, process.stderr()
        assert time.monotonic() < deadline, f"no {name} in {WAIT} s:\n{process.stderr()}"
        time.sleep(0.1)
    return found[-1]


def served_certificate(port: int, root: str | None = None) -> x509.Certificate:
    """The leaf a new TLS handshake on ``port`` gets; verified for DOMAIN against
    Pebble's ``root`` when given."""
    if root:
        context = ssl.create_default_context(cadata=root)
    else:  # only looked at, not trusted
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def metrics(process: ServeProcess) -> str:
    url = f"http://127.0.0.1:{process.port('metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
        return str(reply.read().decode())


def test_certificate_renewed_live_in_every_worker_and_kept_while_ca_down_rfc8555(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 8555 s7.4: a renewal is a new order; the server installs it without a restart.

    Pebble issues 40-second certificates, so renewal falls due 20 s after issuance
    (halfway through the lifetime).  Pebble is stopped before that: the renewal fails,
    the old certificate stays, the log warns and the metrics count the failure; once
    Pebble is back the retry succeeds and new handshakes get the new certificate, while
    a POP3S session opened before goes on.
    """
    pebble = start_pebble(validity=40)
    config = write_config(
        tmp_path,
        tls_files,
        acme_tls(pebble, acme_renew_before=3600, acme_retry_interval=2),
        workers=2,
        metrics_listen="127.0.0.1:0",
    )
    node = serve(tmp_path, config, {"pop3", "pop3s", "metrics", "acme-http"})
    try:
        port = node.port("pop3s")
        first = served_certificate(port, pebble.issuer_root())
        names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == [DOMAIN]
        context = ssl.create_default_context(cadata=pebble.issuer_root())
        context.check_hostname = False  # poplib checks the address; DOMAIN is checked above
        session = poplib.POP3_SSL("127.0.0.1", port, context=context, timeout=TIMEOUT)
        session.user("alice")
        session.pass_(USERS["alice"])

        pebble.stop()
        failed = wait_event(node, "acme_renewal_failed")
        assert failed["level"] == "warning"
        assert 0 < failed["expires_in"] <= 40
        assert served_certificate(port).serial_number == first.serial_number
        exposition = metrics(node)
        assert sample(exposition, "popbox_acme_renewals_total", result="failure") >= 1
        expiry = sample(exposition, "popbox_tls_certificate_expiry_timestamp_seconds")
        assert expiry == first.not_valid_after_utc.timestamp()

        pebble.restart()
        renewed = wait_event(node, "acme_certificate_renewed")
        root = pebble.issuer_root()
        serials = {served_certificate(port, root).serial_number for _ in range(6)}
        assert serials == {int(renewed["serial"], 16)}
        assert first.serial_number not in serials
        assert len(events(node, "tls_reloaded")) >= 2  # each worker reloaded
        assert not events(node, "worker_exited")
        assert session.stat()[0] == 1  # the session from before the renewal goes on
        session.quit()
    finally:
        node.terminate()
        node.close()


def test_single_process_obtains_certificate_before_listening_stls_rfc2595(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 2595 s4: STLS on the plain port offers the same certificate as port 995: the
    one obtained from the CA before the first ``listening`` line."""
    pebble = start_pebble()
    config = write_config(tmp_path, tls_files, acme_tls(pebble), workers=1)
    node = serve(tmp_path, config, {"pop3", "pop3s", "acme-http"})
    try:
        root = pebble.issuer_root()
        assert events(node, "acme_certificate_obtained")
        client = poplib.POP3("127.0.0.1", node.port("pop3"), timeout=TIMEOUT)
        context = ssl.create_default_context(cadata=root)
        context.check_hostname = False  # poplib passes the address; checked below instead
        client.stls(context=context)
        der = client.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        leaf = x509.load_der_x509_certificate(der)
        assert leaf.serial_number == served_certificate(node.port("pop3s"), root).serial_number
        client.quit()
    finally:
        node.terminate()
        node.close()


def start_fails(tmp_path: Path, tls_files: TlsFiles, tls: dict[str, Any], workers: int = 1) -> str:
    """The one ``popbox:`` line of a start that fails; no traceback, nothing listening."""
    config = write_config(tmp_path, tls_files, tls, workers=workers)
    result = subprocess.run(
        [popbox_executable(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("popbox:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_unreachable_directory_at_first_start_is_one_line(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    pebble = start_pebble()
    url = f"https://127.0.0.1:{free_port()}/dir"
    line = start_fails(tmp_path, tls_files, acme_tls(pebble, acme_directory=url), workers=2)
    assert line.startswith(f"popbox: cannot serve: tls.acme_directory: no certificate for {DOMAIN}")
    assert "cannot connect" in line
    assert url in line


def test_directory_not_trusted_names_acme_ca_file(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    pebble = start_pebble()
    line = start_fails(tmp_path, tls_files, acme_tls(pebble, acme_ca_file=""))
    assert "TLS verification of the directory failed" in line
    assert "tls.acme_ca_file" in line


def test_domain_refused_by_ca_is_one_line(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 8555 s6.7 rejectedIdentifier: the CA's problem document, in one line."""
    pebble = start_pebble()
    tls = acme_tls(pebble, acme_domains=["blocked.popbox.test"])
    line = start_fails(tmp_path, tls_files, tls)
    assert "the CA refused" in line
    assert "rejectedIdentifier" in line


def test_challenge_port_in_use_is_one_line(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    pebble = start_pebble()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", pebble.http_port))
        taken.listen()
        line = start_fails(tmp_path, tls_files, acme_tls(pebble))
    assert line == (
        f"popbox: cannot serve: tls.acme_http_listen: cannot listen on "
        f"127.0.0.1:{pebble.http_port}: Address already in use"
    )


def test_failed_http01_validation_names_the_domain_rfc8555_s8_3(
    tmp_path: Path, tls_files: TlsFiles, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 8555 s8.3: the CA must fetch the key authorization from the domain's port 80
    (here Pebble's httpPort); a listener elsewhere fails validation, said in one line."""
    pebble = start_pebble()
    tls = acme_tls(pebble, acme_http_listen=f"127.0.0.1:{free_port()}")
    line = start_fails(tmp_path, tls_files, tls)
    assert f"{DOMAIN}: http-01 validation failed" in line
    assert "connection refused" in line
