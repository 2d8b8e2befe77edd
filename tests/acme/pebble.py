"""Pebble (the ACME test CA, Debian package ``pebble``) on loopback, started by a test.

Theory of operation: ``pebble-challtestsrv`` serves DNS on a loopback port and answers
every A query with 127.0.0.1 (and no AAAA), and Pebble is started with ``-dnsserver``
pointing at it, so any name (``mail.popbox.test``) leads Pebble's validation to the
HTTP-01 listener of the popbox under test: Pebble's ``httpPort`` is that listener's
port.  Pebble's own HTTPS certificate comes from a trustme CA (``ca_file``, what popbox
gets as ``tls.acme_ca_file``); the root that signs the certificates it issues is
regenerated at every start and fetched from its management port (``issuer_root``).
``PEBBLE_VA_NOSLEEP=1`` takes out Pebble's artificial validation delays.

Ports are picked free by binding port 0 and releasing it, then handed to Pebble, which
cannot listen on port 0 and report the port; a start that loses that race is retried.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import trustme
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DOMAIN", "Pebble", "acme_tls", "free_port", "sample"]

DOMAIN = "mail.popbox.test"
START_TIMEOUT = 20.0
_ATTEMPTS = 3


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pebble:
    """A running Pebble and its DNS server; ``stop()`` ends both (only these pids)."""

    directory: Path
    http_port: int  # where Pebble fetches HTTP-01 answers: popbox's acme_http_listen
    validity: int | None = None  # seconds a certificate is valid; None: Pebble's default
    ca_file: Path = field(init=False)
    port: int = field(init=False, default=0)
    management_port: int = field(init=False, default=0)
    dns_port: int = field(init=False, default=0)
    _processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    _logs: list[BinaryIO] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        served = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.directory / "pebble-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        served.private_key_and_cert_chain_pem.write_to_path(str(self.directory / "pebble.pem"))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        """Start the DNS server and Pebble; returns once the directory answers."""
        for attempt in range(_ATTEMPTS):
            try:
                self._start_once()
            except AssertionError:
                self.stop()
                if attempt == _ATTEMPTS - 1:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def restart(self) -> None:
        """Start again after ``stop()`` on the same ports (the same directory URL), as a
        CA that was down comes back; it has a new root and has forgotten every account."""
        self._start_once(same_ports=True)

    def _start_once(self, *, same_ports: bool = False) -> None:
        if not same_ports:
            self.port, self.management_port = free_port(), free_port()
            self.dns_port = free_port(socket.SOCK_DGRAM)
        log = self._log_file("challtestsrv.log")
        self._processes.append(
            subprocess.Popen(
                [
                    "pebble-challtestsrv",
                    f"-dns01=127.0.0.1:{self.dns_port}",
                    "-http01=",
                    "-https01=",
                    "-tlsalpn01=",
                    f"-management=127.0.0.1:{free_port()}",
                    "-defaultIPv4=127.0.0.1",
                    "-defaultIPv6=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.directory / "pebble.pem"),
                "privateKey": str(self.directory / "pebble.pem"),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "domainBlocklist": ["blocked.popbox.test"],
                **({"certificateValidityPeriod": self.validity} if self.validity else {}),
            }
        }
        config_path = self.directory / "pebble-config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        # No artificial sleeps, no rejected nonces, and a challenge answered every time.
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        self._processes.append(
            subprocess.Popen(
                ["pebble", "-config", str(config_path), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=self._log_file("pebble.log"),
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = ssl.create_default_context(cafile=str(self.ca_file))
        while True:
            if any(p.poll() is not None for p in self._processes):
                raise AssertionError(f"pebble exited: {self.log()}")
            try:
                # The URL is the https one this helper built.
                with urllib.request.urlopen(self.url, timeout=2, context=context) as reply:  # noqa: S310
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"pebble did not answer in {START_TIMEOUT} s: {self.log()}")
            time.sleep(0.1)

    def issuer_root(self) -> str:
        """The PEM root that signs what this Pebble issues (new at every start)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, timeout=5, context=context) as reply:
            return str(reply.read().decode("ascii"))

    def _log_file(self, name: str) -> BinaryIO:
        stream = (self.directory / name).open("ab")
        self._logs.append(stream)
        return stream

    def log(self) -> str:
        path = self.directory / "pebble.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for stream in self._logs:
            stream.close()
        self._processes.clear()
        self._logs.clear()


def acme_tls(pebble: Pebble, **overrides: Any) -> dict[str, Any]:
    """A ``[tls]`` section that gets its certificate for DOMAIN from ``pebble``."""
    return {
        "acme_directory": pebble.url,
        "acme_domains": [DOMAIN],
        "acme_contact": "postmaster@popbox.test",
        "acme_ca_file": str(pebble.ca_file),
        "acme_http_listen": f"127.0.0.1:{pebble.http_port}",
        "acme_timeout": 30,
        **overrides,
    }


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """One sample's value in a Prometheus text exposition, None when absent."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None
