"""A bounded pool of LDAP connections, run on worker threads, with fail-over between URIs.

Theory of operation: ldap3 is synchronous, so every LDAP exchange runs on one of
``pool_size`` worker threads, each with a slot of its own (``_Slot``): two connections to
the same server, one bound as the service account for searches and one that binds as the
users whose passwords are checked (rebinding the search connection for every login would
cost a third round trip).  ``run(job)`` waits for a free slot, hands the job the slot's
``LdapSession`` on the slot's thread, and returns its result; the event loop never
blocks on the network.

Connections open lazily and stay open.  A job that fails on the wire (refused, reset,
timed out, garbage that ldap3 cannot decode) closes the slot's connections and is
tried once more on fresh ones if the connection it failed on was an old one (the server
restarted or dropped an idle connection since); otherwise it raises ``LdapUnavailable``.
URIs are tried in the configured order; one that failed is skipped for
``retry_interval`` seconds (a hanging server would otherwise cost every login a
connect timeout); when all are being skipped, ``run`` fails at once, except for the
health probe (``force=True``), which is how an outage ends without traffic.

ldap3's own ``ServerPool`` is not used: its ``active`` mode retries forever, and it
keeps no memory of a failed server across connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import ldap3

from popbox.directory.ldap_session import LdapSession, VerifiedTls

if TYPE_CHECKING:
    from collections.abc import Callable

    from popbox.clock import Clock
    from popbox.config.ldap import LdapSettings

__all__ = ["LdapPool", "LdapUnavailable"]

_T = TypeVar("_T")


class LdapUnavailable(Exception):
    """No configured server could do the job; the message says why (for the log)."""


@dataclass(slots=True)
class _Slot:
    session: LdapSession | None = None
    uri: str = ""


@dataclass(slots=True)
class _Servers:
    """Per-URI back-off, shared by the worker threads."""

    uris: tuple[str, ...]
    retry_interval: float
    clock: Clock
    down_until: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def candidates(self, *, force: bool) -> list[str]:
        now = self.clock.monotonic()
        with self.lock:
            up = [u for u in self.uris if self.down_until.get(u, 0.0) <= now]
        return list(self.uris) if force and not up else up

    def failed(self, uri: str) -> None:
        with self.lock:
            self.down_until[uri] = self.clock.monotonic() + self.retry_interval

    def worked(self, uri: str) -> None:
        with self.lock:
            self.down_until.pop(uri, None)


class LdapPool:
    """``pool_size`` slots on as many threads; see the module docstring."""

    def __init__(self, name: str, settings: LdapSettings, clock: Clock) -> None:
        self._settings = settings
        self._servers = _Servers(settings.uris, settings.retry_interval, clock)
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls = VerifiedTls(context)
        self._executor = ThreadPoolExecutor(
            max_workers=settings.pool_size, thread_name_prefix=f"ldap-{name}"
        )
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(settings.pool_size):
            self._free.put_nowait(_Slot())
        self._closed = False

    async def run(self, job: Callable[[LdapSession], _T], *, force: bool = False) -> _T:
        """``job(session)`` on a worker thread, within the settings' ``timeout``.

        Raises ``LdapUnavailable`` when no server could be reached in time.  A job still
        running when the time is up keeps its slot until its socket times out (ldap3
        cannot be interrupted), so the pool stays bounded.
        """
        if self._closed:
            raise LdapUnavailable("the directory is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._settings.timeout):
                slot = await self._free.get()
        except TimeoutError:
            raise LdapUnavailable(
                f"all {self._settings.pool_size} connections stayed busy for "
                f"{self._settings.timeout:g} s"
            ) from None
        future = loop.run_in_executor(self._executor, self._work, slot, job, force)
        future.add_done_callback(lambda done: self._release(slot, done))
        try:
            async with asyncio.timeout(self._settings.timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise LdapUnavailable(
                f"no answer within {self._settings.timeout:g} s from {slot.uri or 'any server'}"
            ) from None

    def _release(self, slot: _Slot, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            # A job that outlived its caller's deadline: its outcome was already
            # reported as a timeout; reading it here keeps asyncio from logging it.
            done.exception()
        self._free.put_nowait(slot)

    async def close(self) -> None:
        """Close every connection (waiting for running jobs) and stop the threads."""
        self._closed = True
        slots = [await self._free.get() for _ in range(self._settings.pool_size)]
        for slot in slots:
            if slot.session is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, slot.session.close)
                slot.session = None
        self._executor.shutdown(wait=False)

    # -- on the worker threads -------------------------------------------------------

    def _work(self, slot: _Slot, job: Callable[[LdapSession], _T], force: bool) -> _T:  # noqa: FBT001 - run_in_executor passes no keywords
        # A second try only when the first ran on an old connection, which may simply
        # have gone stale (the server restarted or dropped it while idle).
        tries = 2 if slot.session is not None else 1
        failed, error = "", ""
        for _ in range(tries):
            if slot.session is None:
                slot.session = self._connect(slot, force=force)
            try:
                return job(slot.session)
            # ldap3's BER decoder raises assorted exceptions (IndexError, KeyError,
            # pyasn1 errors) on a garbage reply, next to its own LDAPException family
            # and the socket's OSError: whatever the library raises, the server failed.
            except Exception as exc:  # noqa: BLE001 - see above
                failed, error = slot.uri, f"{slot.uri}: {_describe(exc)}"
                self._drop(slot)
        self._servers.failed(failed)
        raise LdapUnavailable(error)

    def _connect(self, slot: _Slot, *, force: bool) -> LdapSession:
        uris = self._servers.candidates(force=force)
        if not uris:
            raise LdapUnavailable(
                f"every server failed within the last {self._settings.retry_interval:g} s"
            )
        problems: list[str] = []
        for uri in uris:
            slot.uri = uri  # for the message should the caller's deadline pass first
            try:
                session = LdapSession.open(self._server(uri), self._settings)
            except Exception as exc:  # noqa: BLE001 - as in _work: any failure is the server's
                self._servers.failed(uri)
                problems.append(f"{uri}: {_describe(exc)}")
            else:
                self._servers.worked(uri)
                return session
        raise LdapUnavailable("; ".join(problems))

    def _server(self, uri: str) -> ldap3.Server:
        return ldap3.Server(
            uri,
            use_ssl=uri.startswith("ldaps://"),
            tls=self._tls,
            connect_timeout=self._settings.connect_timeout,
            get_info=ldap3.NONE,
        )

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.session is not None:
            with contextlib.suppress(Exception):  # the connection is broken already
                slot.session.close()
        slot.session = None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
