"""The renewal schedule of ``AcmeManager`` against a real Pebble, on a manual clock.

RFC 8555 section 7.4 ("Applying for Certificate Issuance") with the HTTP-01 challenge of
section 8.3, answered by popbox's own listener.  The clock is a ``ManualClock`` started
at the real time, so the certificates Pebble issues are judged by it, and a renewal
months ahead is reached with ``advance`` instead of waiting; the issuance itself (in a
thread, over HTTPS to Pebble) takes real time.
"""

from __future__ import annotations

import asyncio
import io
import json
import stat
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509
from pebble import DOMAIN, acme_tls, sample
from prometheus_client import CollectorRegistry, generate_latest

from popbox.acme.files import AcmeFiles
from popbox.acme.manager import AcmeManager
from popbox.clock import ManualClock
from popbox.config import from_mapping
from popbox.observability.log import make_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pebble import Pebble

WAIT = 60.0  # seconds an issuance may take on a loaded machine
DAY = 86400.0


def manager_for(
    tmp_path: Path, pebble: Pebble, clock: ManualClock, **tls: Any
) -> tuple[AcmeManager, io.StringIO]:
    config = from_mapping(
        {
            "data_dir": str(tmp_path / "data"),
            "pop3": {"listen": [], "tls_listen": ["127.0.0.1:0"]},
            "tls": acme_tls(pebble, **tls),
        }
    )
    log = io.StringIO()
    return AcmeManager(config, log=make_logger(json=True, stream=log), clock=clock), log


def events(log: io.StringIO, name: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in log.getvalue().splitlines()]
    return [e for e in found if e["event"] == name]


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def scrape(manager: AcmeManager) -> str:
    registry = CollectorRegistry()
    registry.register(manager.metrics)
    return generate_latest(registry).decode()


async def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_first_start_obtains_certificate_for_domains_rfc8555_s7_4(
    tmp_path: Path, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 8555 s7.4: the client orders a certificate for its identifiers and, once its
    authorizations are valid, finalizes with a CSR and downloads the chain."""
    pebble = start_pebble()
    manager, log = manager_for(tmp_path, pebble, ManualClock(wall_start=time.time()))
    await manager.start()
    try:
        files = AcmeFiles.in_data_dir(tmp_path / "data")
        info = files.current()
        assert info is not None
        assert info.names == {DOMAIN}
        chain = x509.load_pem_x509_certificates(files.cert.read_bytes())
        assert len(chain) >= 2  # leaf and Pebble's intermediate
        assert events(log, "acme_certificate_obtained")
        # The keys are the owner's only; the account key is kept for the next start.
        for key in (files.key, files.account_key):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
        expiry = sample(scrape(manager), "popbox_tls_certificate_expiry_timestamp_seconds")
        assert expiry == info.not_after
    finally:
        await manager.stop()
    account_key = files.account_key.read_bytes()
    # A second start finds the certificate valid and asks the CA for nothing.
    again, log = manager_for(tmp_path, pebble, ManualClock(wall_start=time.time()))
    await again.start()
    await again.stop()
    assert not events(log, "acme_obtaining")
    assert files.account_key.read_bytes() == account_key


async def test_renewal_before_expiry_then_ca_down_keeps_certificate_rfc8555_s7_4(
    tmp_path: Path, start_pebble: Callable[..., Pebble]
) -> None:
    """RFC 8555 s7.4 renewal is a new order; a CA that does not answer leaves the
    certificate in use untouched, warns, and is tried again after the retry interval."""
    pebble = start_pebble()
    clock = ManualClock(wall_start=time.time())
    manager, log = manager_for(tmp_path, pebble, clock, acme_retry_interval=600)
    await manager.start()
    files = AcmeFiles.in_data_dir(tmp_path / "data")
    first = files.current()
    assert first is not None
    installed = asyncio.Event()

    async def on_installed() -> None:
        installed.set()

    manager.run(on_installed)
    try:
        await asyncio.sleep(0)  # the renewal task sleeps on the clock now
        # One day before it is due nothing happens.
        due = first.not_after - 30 * DAY
        clock.advance(due - clock.wall() - DAY)
        await asyncio.sleep(0.2)
        assert not installed.is_set()
        assert serial(files.cert) == first.serial

        pebble.stop()
        clock.advance(2 * DAY)
        await wait_until(lambda: bool(events(log, "acme_renewal_failed")))
        failed = events(log, "acme_renewal_failed")[0]
        assert failed["level"] == "warning"
        assert failed["expires_in"] <= 29 * DAY
        assert "cannot connect" in failed["error"]
        assert serial(files.cert) == first.serial  # the old certificate stays
        metrics = scrape(manager)
        assert sample(metrics, "popbox_acme_renewals_total", result="failure") == 1
        assert sample(metrics, "popbox_tls_certificate_expiry_timestamp_seconds") == first.not_after
        assert not installed.is_set()

        pebble.restart()
        clock.advance(600)  # acme_retry_interval
        await asyncio.wait_for(installed.wait(), WAIT)
        renewed = files.current()
        assert renewed is not None
        assert renewed.serial != first.serial
        assert renewed.names == {DOMAIN}
        metrics = scrape(manager)
        assert sample(metrics, "popbox_acme_renewals_total", result="success") == 1
        assert (
            sample(metrics, "popbox_tls_certificate_expiry_timestamp_seconds") == renewed.not_after
        )
        assert events(log, "acme_certificate_renewed")
    finally:
        await manager.stop()


async def test_changed_domains_get_new_certificate_without_waiting(
    tmp_path: Path, start_pebble: Callable[..., Pebble]
) -> None:
    """A certificate that does not name every configured domain is replaced at once."""
    pebble = start_pebble()
    manager, _ = manager_for(tmp_path, pebble, ManualClock(wall_start=time.time()))
    await manager.start()
    await manager.stop()
    clock = ManualClock(wall_start=time.time())
    both = [DOMAIN, "pop.popbox.test"]
    manager, _ = manager_for(tmp_path, pebble, clock, acme_domains=both)
    await manager.start()
    installed = asyncio.Event()

    async def on_installed() -> None:
        installed.set()

    manager.run(on_installed)
    try:
        await asyncio.wait_for(installed.wait(), WAIT)
        info = AcmeFiles.in_data_dir(tmp_path / "data").current()
        assert info is not None
        assert info.names == set(both)
    finally:
        await manager.stop()
