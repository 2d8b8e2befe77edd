"""The decisions of an LMTP transaction (RFC 2033), as aiosmtpd handler hooks.

``LmtpHandler`` answers LHLO with the extensions RFC 2033 s5 requires, checks MAIL's
declared SIZE (RFC 1870), resolves each RCPT to a mailbox and checks its quota early,
and after the data delivers one copy per accepted recipient through ``DeliveryAgent``,
yielding one reply per RCPT (RFC 2033 s4.2) once that copy is committed.
``lmtp_server.LmtpSession`` drives it.

Memory: the data arrives into a ``spool.DataSpool`` (``new_data``): at most
``[lmtp] spool_threshold`` octets in memory, the rest in a file.  The store takes a
message as one value, so a spooled message is read back whole for its deliveries, one
at a time per process: several large transactions at once cost about one large message
of memory (a few copies of it while it is prepared and stored), not one per transaction.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import Envelope, Session

from popbox.delivery import lmtp_protocol as lp
from popbox.delivery.spool import DataSpool
from popbox.observability.metrics import Metrics
from popbox.store.base import DeliveryRefused, StoreError, UnknownUser
from popbox.store.message import MalformedMessage, prepare

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    import structlog

    from popbox.config import LmtpConfig
    from popbox.delivery.agent import DeliveryAgent

__all__ = ["LmtpEnvelope", "LmtpHandler"]


class LmtpEnvelope(Envelope):
    """aiosmtpd's envelope plus the mailbox each accepted RCPT resolved to."""

    def __init__(self) -> None:
        super().__init__()
        self.mailboxes: list[str] = []


class LmtpHandler:
    """The transaction's decisions: which extensions, which senders, which recipients."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        agent: DeliveryAgent,
        config: LmtpConfig,
        *,
        hostname: str,
        log: structlog.typing.FilteringBoundLogger,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.agent = agent
        self._metrics = metrics or Metrics()
        self.max_message_size = config.max_message_size
        # No directory: every message stays in memory (handlers built without a data_dir).
        self._spool_dir = spool_dir
        self._spool_threshold = config.spool_threshold
        self._read_back = asyncio.Lock()  # one spooled message in memory at a time
        self._permanent_over_quota = config.over_quota == "permanent"
        self._hostname = hostname
        self._log = log
        self._clock = clock

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        del server, envelope, responses  # the reply is ours alone
        session.host_name = hostname
        return [
            f"250-{self._hostname}",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            f"250-SIZE {self.max_message_size}",
            "250-8BITMIME",
            "250 SMTPUTF8",
        ]

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        del server, session
        size = lp.declared_size(options)
        if size is not None and size > self.max_message_size:
            return lp.reply_too_big(self.max_message_size)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 sender OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        del server, session
        assert isinstance(envelope, LmtpEnvelope)
        try:
            name = await self.agent.resolve(address)
            if name is None:
                self._log.info("lmtp_unknown_recipient", recipient=address)
                self._metrics.delivery("unknown_user")
                return lp.reply_no_mailbox(address)
            # An early refusal, before the client sends the data; deliver() decides.
            declared = lp.declared_size(envelope.mail_options) or 0
            if not await self.agent.has_room(name, declared):
                self._log.info("lmtp_over_quota", user=name, stage="rcpt")
                self._metrics.delivery("over_quota")
                return lp.reply_over_quota(address, permanent=self._permanent_over_quota)
        except UnknownUser:
            self._metrics.delivery("unknown_user")
            return lp.reply_no_mailbox(address)
        except StoreError:
            self._log.warning("lmtp_store_error", recipient=address, stage="rcpt")
            self._metrics.delivery("temp_failure")
            return lp.reply_temporary(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.mailboxes.append(name)
        return "250 2.1.5 recipient OK"

    async def handle_exception(self, error: Exception) -> str:
        self._log.error("lmtp_session_failed", error=type(error).__name__, exc_info=error)
        return "451 4.3.0 internal error, try again later"

    def new_data(self) -> lp.DataReader:
        """A reader for one transaction's DATA, spooling past the threshold; close its sink."""
        if self._spool_dir is None:
            return lp.DataReader(self.max_message_size)
        spool = DataSpool(self._spool_dir, self._spool_threshold)
        return lp.DataReader(self.max_message_size, spool)

    async def deliver(
        self, session: Session, envelope: LmtpEnvelope, data: lp.DataReader
    ) -> AsyncIterator[str]:
        """One reply per accepted RCPT, each after that recipient's copy is committed."""
        if data.too_big:
            self._log.info("lmtp_too_big", size=data.size)
            for _ in envelope.rcpt_tos:
                yield lp.reply_too_big(self.max_message_size)
            return
        spool = data.sink if isinstance(data.sink, DataSpool) else None
        if spool is not None and spool.failed is not None:
            self._log.warning("lmtp_spool_failed", error=str(spool.failed), size=data.size)
            for address in envelope.rcpt_tos:
                self._metrics.delivery("temp_failure")
                yield lp.reply_temporary(address)
            return
        if spool is None or not spool.spooled:
            async for reply in self._deliver_all(session, envelope, data.content()):
                yield reply
            return
        async with self._read_back:
            content = await asyncio.to_thread(data.content)
            spool.discard()  # the file's pages are no longer needed
            # Answered after the lock is let go: a client slow to read its replies
            # must not keep other large messages waiting.
            replies = [reply async for reply in self._deliver_all(session, envelope, content)]
            del content
        for reply in replies:
            yield reply

    async def _deliver_all(
        self, session: Session, envelope: LmtpEnvelope, content: bytes
    ) -> AsyncIterator[str]:
        transaction = secrets.token_hex(6)
        # A mailbox named twice (alice@example.com and alice) gets one copy, and each
        # RCPT still its own reply naming its own address.
        outcomes: dict[str, Callable[[str], str]] = {}
        for address, name in zip(envelope.rcpt_tos, envelope.mailboxes, strict=True):
            if name not in outcomes:
                outcomes[name] = await self._deliver_one(
                    session, envelope, address=address, name=name, content=content, txn=transaction
                )
            yield outcomes[name](address)

    async def _deliver_one(  # noqa: PLR0913 - the parts of one recipient's delivery
        self,
        session: Session,
        envelope: LmtpEnvelope,
        *,
        address: str,
        name: str,
        content: bytes,
        txn: str,
    ) -> Callable[[str], str]:
        now = self._clock()
        peer = session.peer
        headers = lp.trace_headers(
            sender=envelope.mail_from or "",
            recipient=address,
            helo=session.host_name or "",
            peer=f"[{peer[0]}]" if isinstance(peer, tuple) else "local",
            hostname=self._hostname,
            transaction_id=txn,
            utf8=envelope.smtp_utf8,
            now=now,
        )
        log = self._log.bind(user=name, transaction=txn)
        try:
            message = prepare(content, trace_headers=headers, received_at=now)
        except MalformedMessage as exc:
            log.info("lmtp_malformed", problem=str(exc))
            self._metrics.delivery("malformed")
            return functools.partial(lp.reply_bad_message, problem=str(exc))
        try:
            info = await self.agent.deliver(name, message, original=content)
        except DeliveryRefused:
            log.info("lmtp_over_quota", stage="data", size=message.size)
            self._metrics.delivery("over_quota")
            return functools.partial(lp.reply_over_quota, permanent=self._permanent_over_quota)
        except UnknownUser:
            self._metrics.delivery("unknown_user")
            return lp.reply_no_mailbox
        except StoreError:
            log.warning("lmtp_store_error", stage="data")
            self._metrics.delivery("temp_failure")
            return lp.reply_temporary
        log.info("lmtp_delivered", uid=info.uid, size=info.size)
        self._metrics.delivery("delivered")
        return functools.partial(lp.reply_delivered, uid=info.uid)
