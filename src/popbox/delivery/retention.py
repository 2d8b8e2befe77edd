"""Retention (E0005): removing the messages the site's policy no longer keeps.

Policy (``[retention]``): ``retrieved_days`` counts from a message's first retrieval (a
RETR or TOP in a session that ended with QUIT), ``unretrieved_days`` from its arrival;
either may be unset, which keeps that kind of message for ever.  This is RFC 1939's
example of a site policy ("delete unread messages after 60 days and read messages after
7 days", seed E0005).

CAPA's EXPIRE (RFC 2449 s6.7) announces the smallest period any message may be kept:
the smaller of the two settings, or NEVER when neither is set.  ``EXPIRE 0`` tells
clients they may not leave mail on the server: retrieved messages go at the next sweep.

The sweep runs in ``popbox serve`` every ``interval`` seconds and as ``popbox expire``
(for cron).  Each mailbox is swept in one transaction, so a crash in the middle leaves
every mailbox either swept or untouched; several processes sweeping at once only find
less to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.clock import SystemClock
from popbox.store.base import StoreError, UnknownUser

if TYPE_CHECKING:
    import structlog

    from popbox.clock import Clock
    from popbox.config import RetentionConfig
    from popbox.store.base import MailStore

__all__ = ["DAY", "expire_all", "run_retention"]

DAY = 86400.0


def _cutoff(days: int | None, now: float) -> float | None:
    return None if days is None else now - days * DAY


async def expire_all(store: MailStore, retention: RetentionConfig, now: float) -> dict[str, int]:
    """Sweep every mailbox once; returns how many messages each lost (only those > 0)."""
    retrieved_before = _cutoff(retention.retrieved_days, now)
    unretrieved_before = _cutoff(retention.unretrieved_days, now)
    if retrieved_before is None and unretrieved_before is None:
        return {}
    removed: dict[str, int] = {}
    for user in await store.list_users():
        try:
            count = await store.expire(
                user.name,
                retrieved_before=retrieved_before,
                unretrieved_before=unretrieved_before,
            )
        except UnknownUser:
            continue  # deleted since the list was read
        if count:
            removed[user.name] = count
    return removed


async def run_retention(
    store: MailStore,
    retention: RetentionConfig,
    log: structlog.typing.FilteringBoundLogger,
    *,
    clock: Clock | None = None,
) -> None:
    """Sweep now and then every ``interval`` seconds (of ``clock``), until cancelled.

    A sweep the store cannot complete is logged and tried again at the next interval.
    """
    if retention.retrieved_days is None and retention.unretrieved_days is None:
        return
    clock = clock or SystemClock()
    while True:
        try:
            removed = await expire_all(store, retention, clock.wall())
        except StoreError as exc:
            log.warning("retention_sweep_failed", error=str(exc))
        else:
            log.info("retention_sweep", removed=sum(removed.values()), mailboxes=len(removed))
        await clock.sleep(retention.interval)
