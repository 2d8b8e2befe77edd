"""Keeping an ACME certificate: obtained at start when missing, renewed before expiry.

Theory of operation: one process per node runs an ``AcmeManager`` (the supervisor with
several workers, else the one serving process), so the CA sees one client and one
account.  ``start`` binds the HTTP-01 listener and makes sure ``data_dir/acme`` holds a
usable certificate before any TLS listener comes up: when there is none (first start,
or the one on disk has expired) it is obtained there and then, within
``tls.acme_timeout``, and if that fails the node does not start (a POP3 server without
a certificate could not accept a password under the default ``secure_login``; a
service manager retries).  ``run`` then sleeps on the injected clock until the renewal
is due (``CertificateInfo.renewal_due``), obtains a new certificate in a thread,
installs it and calls ``installed``, which reloads every listener's TLS context through
the SIGHUP path: running sessions keep their connection, new handshakes get the new
certificate.  A failed renewal keeps the old certificate, logs ``acme_renewal_failed``
(a warning with the time left) and is tried again after ``tls.acme_retry_interval``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from popbox.acme.challenges import ChallengeListener, ChallengeTokens
from popbox.acme.client import AcmeError, IssueSettings, issue
from popbox.acme.files import AcmeFiles, CertificateInfo, utc
from popbox.server.tls import TlsConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    import structlog
    from prometheus_client.metrics_core import Metric

    from popbox.clock import Clock
    from popbox.config import Config

__all__ = ["AcmeManager", "AcmeMetrics", "start_acme"]

# Past tls.acme_timeout, how long the event loop waits for the issuing thread: its
# requests have their own timeout, after which acme gives up by itself.
_THREAD_GRACE = 60.0


class AcmeMetrics:
    """A Prometheus collector: the certificate's expiry and the renewals' outcomes."""

    def __init__(self) -> None:
        self.expiry: float | None = None
        self.renewals = {"success": 0, "failure": 0}

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(
            "popbox_tls_certificate_expiry_timestamp_seconds",
            "When the ACME certificate in use expires (POSIX seconds)",
        )
        if self.expiry is not None:
            expiry.add_metric([], self.expiry)
        yield expiry
        renewals = CounterMetricFamily(
            "popbox_acme_renewals", "ACME certificate issuances after start", labels=["result"]
        )
        for result, count in self.renewals.items():
            renewals.add_metric([result], count)
        yield renewals


class AcmeManager:
    """The ACME certificate of one node (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        log: structlog.typing.FilteringBoundLogger,
        clock: Clock,
    ) -> None:
        self._tls = config.tls
        self._settings = IssueSettings.from_config(config.tls)
        self._files = AcmeFiles.in_data_dir(config.data_dir)
        self._log = log.bind(component="acme")
        self._clock = clock
        self._tokens = ChallengeTokens()
        self._listener = ChallengeListener(self._tokens)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="acme")
        self._current: CertificateInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self.metrics = AcmeMetrics()

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The HTTP-01 listener's addresses, for the ``listening acme-http`` lines."""
        return self._listener.addresses

    async def start(self) -> None:
        """Bind the HTTP-01 listener and make sure a valid certificate is installed.

        Raises ``ListenError`` or ``AcmeError`` (one line naming the key) when not.
        """
        await self._listener.start(self._tls.acme_http_listen)
        try:
            current = self._files.current()
            if current is None or current.not_after <= self._clock.wall():
                self._log.info("acme_obtaining", domains=list(self._tls.acme_domains))
                try:
                    current = await self._obtain()
                except TlsConfigError as exc:
                    domains = ", ".join(self._tls.acme_domains)
                    msg = f"tls.acme_directory: no certificate for {domains}: {exc}"
                    raise AcmeError(msg) from None
                self._log.info("acme_certificate_obtained", expires=utc(current.not_after))
        except BaseException:
            await self.stop()
            raise
        self._current = current
        self.metrics.expiry = current.not_after

    def run(self, installed: Callable[[], Awaitable[object]]) -> None:
        """Renew in the background from now on; ``installed`` reloads the listeners."""
        if self._current is None:
            msg = "AcmeManager.run before start"
            raise RuntimeError(msg)
        renewals = self._renew_forever(self._current, installed)
        self._task = asyncio.get_running_loop().create_task(renewals)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # An issuance still running in its thread ends with its request timeout.
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._listener.stop()

    async def _renew_forever(
        self, current: CertificateInfo, installed: Callable[[], Awaitable[object]]
    ) -> None:
        retry_at: float | None = None
        while True:
            due = retry_at if retry_at is not None else self._due(current)
            if due > self._clock.wall():
                await self._clock.sleep(due - self._clock.wall())
                if self._clock.wall() < due:  # woken early: the wall clock was set back
                    continue
            try:
                renewed = await self._obtain()
            except TlsConfigError as exc:  # AcmeError, or data_dir not writable
                self.metrics.renewals["failure"] += 1
                retry_at = self._clock.wall() + self._tls.acme_retry_interval
                self._log.warning(
                    "acme_renewal_failed",
                    error=str(exc),
                    expires=utc(current.not_after),
                    expires_in=round(current.not_after - self._clock.wall()),
                    retry_in=self._tls.acme_retry_interval,
                )
                continue
            retry_at = None
            current = renewed
            self.metrics.renewals["success"] += 1
            self.metrics.expiry = renewed.not_after
            self._log.info(
                "acme_certificate_renewed",
                serial=f"{renewed.serial:x}",
                expires=utc(renewed.not_after),
            )
            await installed()

    def _due(self, current: CertificateInfo) -> float:
        wanted = frozenset(d.lower().removesuffix(".") for d in self._tls.acme_domains)
        if current.names != wanted:
            return self._clock.wall()  # tls.acme_domains changed: a new certificate now
        return current.renewal_due(self._tls.acme_renew_before)

    async def _obtain(self) -> CertificateInfo:
        """Issue in the worker thread and install; raises ``TlsConfigError``."""
        account_key = self._files.account_key_pem()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self._executor, functools.partial(issue, self._settings, account_key, self._tokens)
        )
        try:
            async with asyncio.timeout(self._settings.timeout + _THREAD_GRACE):
                chain_pem, key_pem = await job
        except TimeoutError:
            msg = f"{self._settings.directory}: no certificate within tls.acme_timeout"
            raise AcmeError(msg) from None
        return self._files.install(chain_pem, key_pem)


async def start_acme(
    config: Config, *, log: structlog.typing.FilteringBoundLogger, clock: Clock
) -> AcmeManager | None:
    """The node's started ``AcmeManager`` when ``tls.acme_directory`` is set, else None."""
    if not config.tls.acme_directory or not (config.pop3.listen or config.pop3.tls_listen):
        return None
    manager = AcmeManager(config, log=log, clock=clock)
    await manager.start()
    return manager
