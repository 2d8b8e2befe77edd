"""Every administrative act of the API and the console, each logged as one audit line.

The JSON routes (``routes_*.py``) and the console pages (``console/``) both call these,
so that a change made from a browser and one made with a token take the same path, are
checked the same way and leave the same ``admin_change`` line: who (``token:ID`` or
``console:USER``), what, on what, from where.  They use the same store calls and the
same delivery agent as the CLI, LMTP and ``popbox deliver``: nothing here reaches into
the store or the sessions by a back door (DESIGN.md section 4b).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from popbox.auth.passwords import verifiers_for
from popbox.delivery.agent import DeliveryAgent
from popbox.delivery.quota import effective_quota
from popbox.store.base import UnknownUser
from popbox.store.message import prepare, unstuff
from popbox.store.store_copy import MailboxExporter

if TYPE_CHECKING:
    import structlog

    from popbox.admin.node import Node
    from popbox.store.base import MailStore, MessageInfo

__all__ = ["Actor", "AdminActions", "NoSuchMessage"]

PREVIEW_CHARS = 200_000  # characters of a text or HTML part the console shows at most


class NoSuchMessage(LookupError):
    """The mailbox has no message with that uid (any more)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks, for the audit line: ``token:ID`` or ``console:USER``, and from where."""

    who: str
    peer: str


class AdminActions:
    def __init__(
        self, store: MailStore, node: Node, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self.store = store
        self.node = node
        self._log = log
        config = node.config
        self._agent = DeliveryAgent(
            store,
            config.quota,
            hostname=config.lmtp.hostname or socket.getfqdn(),
            log=log,
            dedup_window=0.0,  # an operator injecting a message twice means two copies
        )

    def audit(self, actor: Actor, action: str, **what: Any) -> None:
        self._log.info("admin_change", who=actor.who, peer=actor.peer, action=action, **what)

    # -- users ---------------------------------------------------------------------

    async def user_view(self, name: str) -> dict[str, Any]:
        user = await self.store.get_user(name)
        if user is None:
            raise UnknownUser(name)
        messages = await self.store.snapshot(name)
        reason = user.disabled_reason
        return {
            "name": user.name,
            "quota": user.quota,
            "effective_quota": effective_quota(user, self.node.config.quota),
            "used": sum(info.size for info in messages),
            "messages": len(messages),
            "disabled": reason is not None,
            "disabled_reason": reason,
        }

    async def users_page(self, query: str, offset: int, limit: int) -> dict[str, Any]:
        """Users whose name contains ``query`` (case-insensitive), by name, one page."""
        folded = query.casefold()
        names = [u.name for u in await self.store.list_users() if folded in u.name.casefold()]
        page = names[offset : offset + limit]
        views = await asyncio.gather(*(self.user_view(name) for name in page))
        return {"total": len(names), "offset": offset, "limit": limit, "users": list(views)}

    async def add_user(
        self, actor: Actor, name: str, password: str, quota: int | None
    ) -> dict[str, Any]:
        verifiers = await asyncio.to_thread(verifiers_for, password, auth=self.node.config.auth)
        await self.store.add_user(name, verifiers, quota)
        self.audit(actor, "user.add", user=name, quota=quota)
        return await self.user_view(name)

    async def set_password(self, actor: Actor, name: str, password: str) -> None:
        if await self.store.get_user(name) is None:
            raise UnknownUser(name)
        verifiers = await asyncio.to_thread(verifiers_for, password, auth=self.node.config.auth)
        await self.store.set_verifiers(name, verifiers)
        self.audit(actor, "user.password", user=name)

    async def set_quota(self, actor: Actor, name: str, quota: int | None) -> dict[str, Any]:
        await self.store.set_quota(name, quota)
        self.audit(actor, "user.quota", user=name, quota=quota)
        return await self.user_view(name)

    async def set_disabled(self, actor: Actor, name: str, reason: str | None) -> dict[str, Any]:
        """Disable (and close the user's sessions) or, with None, enable."""
        await self.store.set_disabled(name, reason)
        kicked = await self.node.kick(user=name) if reason is not None else 0
        action = "user.disable" if reason is not None else "user.enable"
        self.audit(actor, action, user=name, reason=reason, kicked=kicked)
        return await self.user_view(name)

    async def delete_user(self, actor: Actor, name: str) -> None:
        await self.store.delete_user(name)
        kicked = await self.node.kick(user=name)
        self.audit(actor, "user.delete", user=name, kicked=kicked)

    # -- mailboxes -----------------------------------------------------------------

    async def messages(self, name: str) -> list[dict[str, Any]]:
        if await self.store.get_user(name) is None:
            raise UnknownUser(name)
        infos = await self.store.snapshot(name)
        retrieved: dict[int, float] = {}
        if isinstance(self.store, MailboxExporter):
            retrieved = dict((await self.store.export_state(name)).retrieved_at)
        return [_listing(info, retrieved.get(info.uid)) for info in infos]

    async def raw(self, name: str, uid: int) -> bytes:
        """The message as RETR sends it, before byte-stuffing."""
        if await self.store.get_user(name) is None:
            raise UnknownUser(name)
        wire = await self.store.fetch(name, uid)
        if wire is None:
            raise NoSuchMessage(uid)
        return unstuff(wire)

    async def message(self, name: str, uid: int) -> dict[str, Any]:
        """One message's listing, parsed headers, and its first text and HTML parts."""
        raw = await self.raw(name, uid)
        listing = next((m for m in await self.messages(name) if m["uid"] == uid), None)
        if listing is None:
            raise NoSuchMessage(uid)
        parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        headers = [[key, str(value)] for key, value in parsed.items()]
        return {**listing, "headers": headers, "text": _part(parsed, "plain")} | {
            "html": _part(parsed, "html")
        }

    async def inject(self, actor: Actor, name: str, raw: bytes) -> dict[str, Any]:
        """Deliver as LMTP does: normalised, under the quota, committed before the answer.

        Raises ``MalformedMessage``, ``DeliveryRefused`` and ``UnknownUser``.
        """
        info = await self._agent.deliver(name, prepare(raw), original=raw)
        self.audit(actor, "message.inject", user=name, uid=info.uid, size=info.size)
        return _listing(info, None)

    async def delete_message(self, actor: Actor, name: str, uid: int) -> None:
        if await self.store.get_user(name) is None:
            raise UnknownUser(name)
        if await self.store.delete(name, [uid]) == 0:
            raise NoSuchMessage(uid)
        self.audit(actor, "message.delete", user=name, uid=uid)

    # -- sessions and operations -----------------------------------------------------

    async def kick(self, actor: Actor, *, session: str | None, user: str | None) -> int:
        kicked = await self.node.kick(session=session, user=user)
        self.audit(actor, "session.kick", session=session, user=user, kicked=kicked)
        return kicked

    async def reload(self, actor: Actor) -> bool:
        reloaded = await self.node.reload()
        self.audit(actor, "config.reload", applied=reloaded)
        return reloaded


def _listing(info: MessageInfo, retrieved_at: float | None) -> dict[str, Any]:
    return {
        "uid": info.uid,
        "uidl": info.uidl,
        "size": info.size,
        "received_at": info.received_at,
        "retrieved_at": retrieved_at,
    }


def _part(message: email.message.EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return str(content)[:PREVIEW_CHARS]
