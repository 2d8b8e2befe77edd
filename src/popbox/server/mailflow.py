"""The post-login half of a POP3 session: RETR/TOP bodies and UPDATE, against the store.

Theory of operation: the login gives the session a ``MaildropHandle``
(``LoginFlow.maildrop``): the snapshot, the body reads and UPDATE's commit.  The
session (``server/session.py``) offers every ``Retrieve`` to ``answer_now`` first, which
answers it in the callback that read the command when the handle has the body at once
(``body_now``; whatever a backend reads ahead stays inside its handle); otherwise the
session awaits ``retrieve``.  ``update`` runs QUIT's UPDATE (V0006) as the handle's one
atomic commit and gives the maildrop lock back before the +OK (RFC 1939 s6).  Every
answer goes to the sans-IO connection; a store that fails is one ``-ERR`` with the
response code ``store_errors.response_code`` gives its kind, and the session survives.
The mirror image of ``LoginFlow`` (``server/loginflow.py``), whose logger (bound with the
user), lock and handle it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.server.store_errors import response_code
from popbox.store import message
from popbox.store.base import CommitOutcomeUnknown, Pending, StoreError

if TYPE_CHECKING:
    from popbox.protocol.connection import Pop3Connection, Retrieve
    from popbox.server.context import ServerContext
    from popbox.server.loginflow import LoginFlow
    from popbox.store.base import MaildropHandle

__all__ = ["MailFlow"]


class MailFlow:
    """Answers one session's RETR, TOP and UPDATE events."""

    def __init__(
        self,
        server: ServerContext,
        conn: Pop3Connection,
        login: LoginFlow,
    ) -> None:
        self._server = server
        self._conn = conn
        self._login = login

    def answer_now(self, event: Retrieve, *, lost: bool) -> bool:
        """Answer RETR/TOP from ``body_now`` if the handle can; False: ``retrieve`` must."""
        if lost:
            self._conn.store_failed()  # nobody to send it to: do not read the body
            return True
        try:
            wire = self._maildrop().body_now(event.info.uid)
        except StoreError as exc:
            self._login.log.warning("fetch_store_error", uid=event.info.uid)
            self._conn.store_failed(response_code(exc))
            return True
        if wire is Pending.FETCH:
            return False
        self._send(event, wire)
        return True

    async def retrieve(self, event: Retrieve) -> None:
        try:
            wire = await self._maildrop().body(event.info.uid)
        except StoreError as exc:
            self._login.log.warning("fetch_store_error", uid=event.info.uid)
            self._conn.store_failed(response_code(exc))
            return
        self._send(event, wire)

    async def update(self, deleted: tuple[int, ...], retrieved: tuple[int, ...]) -> None:
        try:
            removed = await self._maildrop().commit(deleted, retrieved, self._server.clock.wall())
        except CommitOutcomeUnknown:
            self._login.log.warning("update_outcome_unknown", marked=len(deleted))
            await self._login.release_lock()
            self._conn.update_unknown()
            return
        except StoreError as exc:
            # One transaction: nothing was removed, and the reply says exactly that.
            self._login.log.warning("update_failed", marked=len(deleted), error=str(exc))
            await self._login.release_lock()
            self._conn.update_finished(ok=False, code=response_code(exc))
            return
        self._login.log.info("update", deleted=removed)
        # RFC 1939 s6: UPDATE releases the maildrop before the +OK, so a client that
        # reconnects as soon as it reads it does not find the maildrop still locked.
        await self._login.release_lock()
        self._conn.update_finished(ok=True)

    def _maildrop(self) -> MaildropHandle:
        maildrop = self._login.maildrop
        assert maildrop is not None, "RETR, TOP and UPDATE come after a login"
        return maildrop

    def _send(self, event: Retrieve, wire: bytes | None) -> None:
        if wire is None:
            self._conn.message_gone()  # C0004: removed behind this session's back
        elif event.lines is None:
            self._conn.send_message(wire)
        else:
            self._conn.send_message(message.top_lines(wire, event.lines))
