"""Mailbox quotas (E0003, E0004): which limit applies, and the warning message.

A mailbox's quota is its own (``popbox user add --quota``, ``popbox user quota``) or,
when it has none, ``[quota] default_quota``; no quota at all means no limit.  Usage is
the sum of the exact sizes of the stored messages, the same octets STAT reports.

When a delivery takes usage to ``warning_percent`` of the quota or beyond, one warning
message is put into the maildrop (E0004: "inform users of impending exhaustion of quota,
perhaps by inserting an appropriate message into the user's maildrop").  The store's
per-user flag remembers that it was sent; it is cleared by the first delivery that finds
usage below the threshold again, and a delivery that itself crosses the threshold warns
again, so a user who cleaned up and filled the mailbox again hears about it once more.
"""

from __future__ import annotations

import math
import secrets
from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popbox.config import QuotaConfig
    from popbox.store.base import UserRecord

__all__ = ["effective_quota", "warning_message", "warning_threshold"]


def effective_quota(user: UserRecord, config: QuotaConfig) -> int | None:
    """The user's own quota, else the server default; None means unlimited (E0003)."""
    return user.quota if user.quota is not None else config.default_quota


def warning_threshold(quota: int, config: QuotaConfig) -> int:
    """Usage in octets at which the warning is due: ``warning_percent`` of ``quota``."""
    return math.ceil(quota * config.warning_percent / 100)


def _human(octets: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if octets >= scale:
            return f"{octets / scale:.1f} {unit}"
    return f"{octets} octets"


def warning_message(name: str, used: int, quota: int, *, hostname: str, now: float) -> bytes:
    """The RFC 5322 warning put into ``name``'s maildrop when usage crosses the threshold.

    Auto-Submitted (RFC 3834) keeps vacation responders and the like from answering it.
    """
    percent = 100 * used // quota if quota else 100
    lines = [
        f"From: Mail Delivery System <postmaster@{hostname}>",
        f"To: {name}",
        f"Subject: Your mailbox is {percent}% full",
        f"Date: {formatdate(now, localtime=True)}",
        f"Message-ID: <quota-{secrets.token_hex(8)}@{hostname}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Your mailbox uses {_human(used)} of its {_human(quota)} quota ({percent}%).",
        "",
        "When it is full, new messages are refused and their senders are told so.",
        "Delete messages you no longer need, or ask your administrator for more space.",
        "",
    ]
    # The user name may be UTF-8; the message keeps it as 8-bit header text (C0011).
    return "\r\n".join(lines).encode("utf-8")
