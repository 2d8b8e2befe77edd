"""A bounded pool of LDAP connections on the event loop, with fail-over between URIs.

Theory of operation: the pool has ``pool_size`` slots (``_Slot``), each holding a
session of two connections to the same server, one bound as the service account for
searches and one that binds as the users whose passwords are checked (rebinding the
search connection for every login would cost a third round trip).  ``run(job)`` waits
for a free slot and awaits ``job(session)`` on it, so at most ``pool_size`` jobs talk
to the directory at once and a slot's connections are never shared by two jobs (a
bind must not overlap another request on its connection, RFC 4511 section 4.2.1).

Connections open lazily and stay open.  A job that fails on the wire (refused, reset,
timed out, octets that are not LDAP) closes the slot's connections and is tried once
more on fresh ones if the connection it failed on was an old one (the server restarted
or dropped an idle connection since); otherwise it raises ``LdapUnavailable``.  A job
that outlives ``timeout`` is cancelled and its slot's connections closed: a reply may
still be on its way, and the next job must not read it.  URIs are tried in the
configured order; one that failed is skipped for ``retry_interval`` seconds (a hanging
server would otherwise cost every login a connect timeout); when all are being
skipped, ``run`` fails at once, except for the health probe (``force=True``), which is
how an outage ends without traffic.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from popbox.directory.ldap_connection import LdapError
from popbox.directory.ldap_session import LdapSession

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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
    """Per-URI back-off."""

    uris: tuple[str, ...]
    retry_interval: float
    clock: Clock
    down_until: dict[str, float] = field(default_factory=dict)

    def candidates(self, *, force: bool) -> list[str]:
        now = self.clock.monotonic()
        up = [u for u in self.uris if self.down_until.get(u, 0.0) <= now]
        return list(self.uris) if force and not up else up

    def failed(self, uri: str) -> None:
        self.down_until[uri] = self.clock.monotonic() + self.retry_interval

    def worked(self, uri: str) -> None:
        self.down_until.pop(uri, None)


class LdapPool:
    """``pool_size`` slots; see the module docstring."""

    def __init__(self, settings: LdapSettings, clock: Clock) -> None:
        self._settings = settings
        self._servers = _Servers(settings.uris, settings.retry_interval, clock)
        self._context = ssl.create_default_context(cafile=settings.ca_file or None)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(settings.pool_size):
            self._free.put_nowait(_Slot())
        self._closed = False

    async def run(self, job: Callable[[LdapSession], Awaitable[_T]], *, force: bool = False) -> _T:
        """``await job(session)`` on a free slot, within the settings' ``timeout``.

        Raises ``LdapUnavailable`` when no server could be reached in time.
        """
        if self._closed:
            raise LdapUnavailable("the directory is closed")
        timeout = self._settings.timeout
        try:
            async with asyncio.timeout(timeout):
                slot = await self._free.get()
        except TimeoutError:
            raise LdapUnavailable(
                f"all {self._settings.pool_size} connections stayed busy for {timeout:g} s"
            ) from None
        try:
            async with asyncio.timeout(timeout):
                return await self._work(slot, job, force=force)
        except TimeoutError:
            if slot.uri:
                self._servers.failed(slot.uri)
            raise LdapUnavailable(
                f"no answer within {timeout:g} s from {slot.uri or 'any server'}"
            ) from None
        finally:
            if slot.session is not None and not slot.session.usable:
                self._drop(slot)
            self._free.put_nowait(slot)

    async def close(self) -> None:
        """Close every connection, once the jobs running now are done."""
        self._closed = True
        for _ in range(self._settings.pool_size):
            self._drop(await self._free.get())

    async def _work(
        self, slot: _Slot, job: Callable[[LdapSession], Awaitable[_T]], *, force: bool
    ) -> _T:
        # A second try only when the first ran on an old connection, which may simply
        # have gone stale (the server restarted or dropped it while idle).
        tries = 2 if slot.session is not None else 1
        failed, error = "", ""
        for _ in range(tries):
            if slot.session is None:
                slot.session = await self._connect(slot, force=force)
            try:
                return await job(slot.session)
            except (LdapError, OSError) as exc:
                failed, error = slot.uri, f"{slot.uri}: {_describe(exc)}"
                self._drop(slot)
            except BaseException:
                # Cancelled, or out of time: a reply may still arrive on these
                # connections, and the next job must not take it for its own.
                self._drop(slot)
                raise
        self._servers.failed(failed)
        raise LdapUnavailable(error)

    async def _connect(self, slot: _Slot, *, force: bool) -> LdapSession:
        uris = self._servers.candidates(force=force)
        if not uris:
            raise LdapUnavailable(
                f"every server failed within the last {self._settings.retry_interval:g} s"
            )
        problems: list[str] = []
        for uri in uris:
            slot.uri = uri  # for the message should the caller's deadline pass first
            try:
                session = await LdapSession.open(uri, self._settings, self._context)
            # OSError covers refused, reset, TLS failures (ssl.SSLError) and a step of
            # opening that took over connect_timeout (TimeoutError).
            except (LdapError, OSError) as exc:
                self._servers.failed(uri)
                problems.append(f"{uri}: {_describe(exc)}")
            else:
                self._servers.worked(uri)
                return session
        raise LdapUnavailable("; ".join(problems))

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.session is not None:
            slot.session.close()
        slot.session = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
