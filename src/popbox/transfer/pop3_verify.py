"""Checking an import: does popbox show every unique-id the source does, in its order?

The source is asked UIDL and LIST once (read-only, as the import); popbox's side is the
mailbox's snapshot in the store, which is what its UIDL and LIST answer.  A unique-id the
source lists and the mailbox does not show, one an imported message shows and the source
does not list, or the same unique-ids in another order, is a difference: a client that
leaves mail on the server would download that message again (or miss it).  Sizes are
compared too, but a size difference is only a warning unless the source's sizes are
exact (Exchange's are estimates unless EnableExactRFC822Size is set; Dovecot's are exact).
Messages delivered to popbox itself (no legacy unique-id) are not differences: they
arrive after the cut-over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popbox.store.base import UnknownUser
from popbox.transfer.pop3_import import open_source
from popbox.transfer.pop3_listing import plan_entries

if TYPE_CHECKING:
    from popbox.store.base import MailStore
    from popbox.transfer.pop3_import import Pop3Source

__all__ = ["VerifyReport", "verify_pop3"]


@dataclass(slots=True)
class VerifyReport:
    source_count: int = 0
    popbox_count: int = 0
    differences: list[str] = field(default_factory=list)  # UIDL differences: fatal
    size_differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unique-ids the import could not keep

    def passed(self, *, exact_sizes: bool) -> bool:
        return not self.differences and not (exact_sizes and self.size_differences)


async def verify_pop3(store: MailStore, name: str, source: Pop3Source) -> VerifyReport:
    """Compare the source mailbox's listing with ``name``'s (module docs)."""
    if await store.get_user(name) is None:
        raise UnknownUser(f"no such user {name!r}")
    client = await open_source(source, max_message_size=1024 * 1024)  # no RETR is sent
    try:
        uidls = await client.uidl()
        sizes = await client.list_sizes()
    finally:
        await client.quit()
    report = VerifyReport()
    if uidls is None:
        report.differences.append("the source does not answer UIDL: there is nothing to compare")
        return report
    entries, report.notes = plan_entries(sizes, uidls)
    snapshot = await store.snapshot(name)
    report.source_count = len(entries)
    report.popbox_count = len(snapshot)
    shown = {info.uidl: (order, info) for order, info in enumerate(snapshot)}
    listed = set()
    position = -1
    for entry in entries:
        if entry.uidl is None:
            continue  # given a new unique-id by the import's rule: in ``notes``
        listed.add(entry.uidl)
        if entry.uidl not in shown:
            report.differences.append(f"- {entry.uidl} (source message {entry.number})")
            continue
        order, info = shown[entry.uidl]
        if info.size != entry.size:
            report.size_differences.append(
                f"{entry.uidl}: source {entry.size} octets, popbox {info.size}"
            )
        if order < position:
            report.differences.append(f"~ {entry.uidl}: in a different order than the source")
        position = max(position, order)
    for info in snapshot:
        if info.uidl not in listed and info.legacy_uidl is not None:
            report.differences.append(f"+ {info.uidl} (only in popbox, uid {info.uid})")
    return report
