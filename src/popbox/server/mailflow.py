"""The post-login half of a POP3 session: RETR/TOP bodies and UPDATE, against the store.

Theory of operation: the session (``server/session.py``) offers every ``Retrieve`` to
``answer_now`` first, which answers it in the callback that read the command when the
store has the body at once (``fetch_now``); otherwise the session awaits ``retrieve``.
When the client asks for consecutive messages, as a download does, the next few small
bodies are read in one go (``MailStore.read_ahead``: at most ``AHEAD_COUNT`` messages
and ``AHEAD_OCTETS`` octets held per session) and the RETRs that follow are answered
from them, as long as the store vouches that none of them has been removed since.
``update`` runs QUIT's UPDATE (V0006) and gives the maildrop lock back before the +OK
(RFC 1939 s6).  Every answer goes to the sans-IO connection, and a store that fails is
one ``-ERR [SYS/TEMP]`` the session survives.  The mirror image of ``LoginFlow``
(``server/loginflow.py``), whose logger (bound with the user) and lock it uses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from popbox.store import message
from popbox.store.base import Pending, StoreError

if TYPE_CHECKING:
    from popbox.protocol.connection import Pop3Connection, Retrieve
    from popbox.server.context import ServerContext
    from popbox.server.loginflow import LoginFlow
    from popbox.server.observe import SessionObserver
    from popbox.store.base import Prefetched

__all__ = ["AHEAD_COUNT", "AHEAD_OCTETS", "MailFlow"]

# One read serves up to this many RETRs; beyond 16 the saving per RETR is small, while
# the memory a downloading session holds keeps growing.
AHEAD_COUNT = 16
AHEAD_OCTETS = 64 * 1024


class MailFlow:
    """Answers one session's RETR, TOP and UPDATE events."""

    def __init__(
        self,
        server: ServerContext,
        conn: Pop3Connection,
        observe: SessionObserver,
        login: LoginFlow,
    ) -> None:
        self._server = server
        self._conn = conn
        self._observe = observe
        self._login = login
        self._ahead: Prefetched | None = None
        self._previous = 0  # the message number of the last RETR or TOP

    def answer_now(self, event: Retrieve, *, lost: bool) -> bool:
        """Answer RETR/TOP from ``fetch_now`` if the store can; False: ``retrieve`` must."""
        user = self._conn.user
        assert user is not None
        if lost:
            self._conn.store_failed()  # nobody to send it to: do not read the body
            return True
        try:
            wire = self._read_now(user, event)
        except StoreError:
            self._login.log.warning("fetch_store_error", uid=event.info.uid)
            self._conn.store_failed()
            return True
        if wire is Pending.FETCH:
            return False
        self._send(event, wire)
        return True

    def _read_now(self, user: str, event: Retrieve) -> bytes | Pending | None:
        uid = event.info.uid
        consecutive = event.msg == self._previous + 1
        self._previous = event.msg
        if self._ahead is not None:
            wire = self._ahead.take(uid)
            if wire is not None:
                return wire
        store = self._server.store
        if consecutive:
            run = self._conn.run_from(event.msg, AHEAD_OCTETS, AHEAD_COUNT)
            if len(run) > 1:
                self._ahead = store.read_ahead(user, run)
                wire = None if self._ahead is None else self._ahead.take(uid)
                if wire is not None:
                    return wire
        # Not read ahead, too large, removed meanwhile (None), or stale: read it now.
        return store.fetch_now(user, uid)

    async def retrieve(self, event: Retrieve) -> None:
        user = self._conn.user
        assert user is not None
        try:
            wire = await self._server.store.fetch(user, event.info.uid)
        except StoreError:
            self._login.log.warning("fetch_store_error", uid=event.info.uid)
            self._conn.store_failed()
            return
        self._send(event, wire)

    async def update(self, deleted: tuple[int, ...], retrieved: tuple[int, ...]) -> None:
        user = self._conn.user
        assert user is not None
        store = self._server.store
        try:
            removed = await store.delete(user, deleted) if deleted else 0
            if retrieved:
                await store.mark_retrieved(user, retrieved, time.time())
        except StoreError:
            self._login.log.warning("update_failed", marked=len(deleted))
            await self._login.release_lock()
            self._conn.update_finished(ok=False)
            return
        self._login.log.info("update", deleted=removed)
        # RFC 1939 s6: UPDATE releases the maildrop before the +OK, so a client that
        # reconnects as soon as it reads it does not find the maildrop still locked.
        await self._login.release_lock()
        self._conn.update_finished(ok=True)

    def _send(self, event: Retrieve, wire: bytes | None) -> None:
        if wire is None:
            self._conn.message_gone()  # C0004: removed behind this session's back
        elif event.lines is None:
            self._observe.body = wire
            self._conn.send_message(wire)
        else:
            self._observe.body = message.top_lines(wire, event.lines)
            self._conn.send_message(self._observe.body)
