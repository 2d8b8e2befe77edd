"""The one way into a maildrop for every delivery path: LMTP and ``popbox deliver``.

``DeliveryAgent`` resolves a recipient to a mailbox (asking the user directories, when
given: a directory's user gets a mailbox at the first delivery), applies the effective quota (the
user's own or the server default, E0003), stores the message durably (the store commits
before returning), and puts the one quota warning into the maildrop when usage crosses
the threshold (E0004).  A refused delivery stores nothing: the quota check and the
insert are one transaction in the store.

A delivery given its ``original`` content carries a key (the mailbox and a SHA-256 of
that content) the store records in the delivery's transaction: an MTA that retries a
message whose acknowledgement it never got (the reply was lost, or the store could not
learn the commit's outcome and answered "try again") within ``dedup_window`` seconds
gets the first copy's acknowledgement, and no second copy is stored.

Deliveries to one mailbox with a quota are serialised inside this process, so that the
usage read after a delivery is that delivery's own and two deliveries crossing the
threshold together send one warning.  Other processes delivering to the same mailbox at
the same instant may at worst send one extra warning; never a lost message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.delivery.lmtp_protocol import mailbox_candidates
from popbox.delivery.quota import effective_quota, warning_message, warning_threshold
from popbox.directory.base import Status
from popbox.directory.mailboxes import ensure_mailbox
from popbox.store.base import StoreError, StoreTemporaryError, UnknownUser
from popbox.store.message import prepare

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import structlog

    from popbox.config import QuotaConfig
    from popbox.directory.chain import DirectoryChain
    from popbox.store.base import MailStore, MessageInfo, NewMessage

__all__ = ["DeliveryAgent", "delivery_key"]


def delivery_key(name: str, original: bytes) -> str:
    """The key that recognises a retry: ``name``'s mailbox and the content's digest."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\0" + original).hexdigest()
    return f"sha256:{digest}"


@dataclass(slots=True)
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class DeliveryAgent:
    """Delivers into ``store`` under the ``[quota]`` settings.

    ``hostname`` names this server in warning messages; ``clock`` gives POSIX seconds;
    ``dedup_window`` is how long a delivery is recognised when retried (0: never).
    """

    def __init__(  # noqa: PLR0913 - keyword-only settings with defaults
        self,
        store: MailStore,
        quota: QuotaConfig,
        *,
        hostname: str,
        log: structlog.typing.FilteringBoundLogger | None = None,
        clock: Callable[[], float] = time.time,
        dedup_window: float = 0.0,
        directories: DirectoryChain | None = None,
    ) -> None:
        self._store = store
        self._directories = directories
        self._dedup_window = dedup_window
        self._quota = quota
        self._hostname = hostname
        self._log = log
        self._clock = clock
        self._gates: dict[str, _Gate] = {}

    async def resolve(self, address: str) -> str | None:
        """The mailbox ``address`` delivers to, or None when there is none.

        With directories, each candidate name is looked up in the chain (a disabled
        account still receives mail); a directory that cannot answer raises
        ``StoreTemporaryError``, so the MTA tries again later.  Without, the store's
        mailboxes are the recipients.
        """
        for name in mailbox_candidates(address):
            if self._directories is None:
                if await self._store.get_user(name) is not None:
                    return name
                continue
            answer = await self._directories.lookup(name)
            account = answer.verdict.account
            if answer.verdict.status is Status.TEMPFAIL:
                detail = answer.verdict.detail
                raise StoreTemporaryError(f"directory {answer.directory}: {detail}")
            if account is not None:
                if not answer.stored:
                    await ensure_mailbox(self._store, account)
                return account.mailbox
        return None

    async def has_room(self, name: str, size: int) -> bool:
        """Whether ``size`` more octets fit ``name``'s quota now (an early check at RCPT).

        The binding check is the one ``deliver`` makes atomically with the insert.
        """
        user = await self._store.get_user(name)
        if user is None:
            raise UnknownUser(f"no such user {name!r}")
        quota = effective_quota(user, self._quota)
        if quota is None:
            return True
        used = await self._store.usage(name)
        return used < quota and used + size <= quota

    async def deliver(
        self, name: str, message: NewMessage, *, original: bytes | None = None
    ) -> MessageInfo:
        """Store ``message`` for ``name`` durably; then warn if the quota is nearly full.

        ``original`` is the content as the MTA sent it (before trace headers): with it,
        a retry within ``dedup_window`` is answered with the first copy's ``MessageInfo``.
        Raises ``UnknownUser``, ``DeliveryRefused`` (over quota; nothing was stored) and
        ``StoreError`` (nothing was stored either, unless the failure came from the
        commit itself, which the caller must treat as "try again later").
        """
        user = await self._store.get_user(name)
        if user is None:
            raise UnknownUser(f"no such user {name!r}")
        quota = effective_quota(user, self._quota)
        window = self._dedup_window
        if original is not None and window > 0:
            message = dataclasses.replace(message, delivery_key=delivery_key(name, original))
        if quota is None:
            return await self._store.deliver(name, message, dedup_window=window)
        async with self._serialised(name):
            info = await self._store.deliver(name, message, quota=quota, dedup_window=window)
            try:
                await self._warn_if_due(name, info.size, quota)
            except StoreError as exc:
                # The message itself is committed: a failed warning must not turn its
                # acknowledgement into a failure (the MTA would deliver it twice).
                if self._log is not None:
                    self._log.warning("quota_warning_failed", user=name, error=str(exc))
        return info

    async def _warn_if_due(self, name: str, size: int, quota: int) -> None:
        threshold = warning_threshold(quota, self._quota)
        used = await self._store.usage(name)
        if used < threshold:
            await self._store.set_quota_warned(name, warned=False)
            return
        crossed_now = used - size < threshold
        already = await self._store.set_quota_warned(name, warned=True)
        if already and not crossed_now:
            return
        now = self._clock()
        text = warning_message(name, used, quota, hostname=self._hostname, now=now)
        # No quota on the warning itself: it is small, and it must not be lost.
        await self._store.deliver(name, prepare(text, received_at=now))
        if self._log is not None:
            self._log.info("quota_warning_sent", user=name, used=used, quota=quota)

    @contextlib.asynccontextmanager
    async def _serialised(self, name: str) -> AsyncIterator[None]:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _Gate()
        gate.users += 1
        try:
            async with gate.lock:
                yield
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[name]
