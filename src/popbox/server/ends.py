"""The two ends of one POP3 session: who connected, how long it may last, and the close.

Theory of operation: ``Pop3Protocol`` (``server/session.py``) answers commands and decides
when the session ends; what it does once at either end of the connection is here, off the
command path.  ``arrive`` runs when the connection is made: it names the client (the
address a PROXY header announced, else the socket's peer) and the local end, binds the
session's logger to the session and the client, gives the client to the ``LoginFlow``
(brute-force accounting counts per IP) and to the observer, enters the session in the
server's live set and logs the connect.  ``depart`` runs once the session has stopped
answering: it leaves the live set, gives up the maildrop lock whatever went wrong before,
lets the last replies drain for at most ``linger`` seconds (``ClientLink.close``), and logs
the disconnect with the session's summary; ``closed`` is done once the session is.

Two times bound the session.  ``timeout`` is the inactivity timeout (V0002) that applies
now, the authenticated one once a user is logged in, read afresh from the configuration
each time (a reload changes it for running sessions); ``timer`` builds the session's
``InactivityTimer`` on it.  ``linger`` is that timeout, at most ``CLOSE_LINGER``: the
session sets it again after each answer that had to wait, as a login changes which
timeout applies.  ``timeout`` is read whenever the timer is armed, which is why this module
is compiled with the session.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from popbox.server.link import endpoint
from popbox.server.progress import InactivityTimer

if TYPE_CHECKING:
    from collections.abc import Callable

    import structlog

    from popbox.protocol.connection import Pop3Connection
    from popbox.server.context import ServerContext
    from popbox.server.link import ClientLink
    from popbox.server.loginflow import LoginFlow
    from popbox.server.observe import SessionObserver
    from popbox.server.progress import Output

__all__ = ["CLOSE_LINGER", "SessionEnds"]

CLOSE_LINGER = 30.0  # seconds a closed session's last replies may take to drain, at most


class SessionEnds:
    """What one session does once when its connection is made, and once when it ends."""

    def __init__(  # noqa: PLR0913, PLR0917 - the parts both ends touch
        self,
        server: ServerContext,
        session_id: str,
        conn: Pop3Connection,
        observe: SessionObserver,
        login: LoginFlow,
        link: ClientLink,
        *,
        client: tuple[str, int] | None,  # from a PROXY header; None: the socket's peer
    ) -> None:
        self._server = server
        self._session_id = session_id
        self._conn = conn
        self._observe = observe
        self._login = login
        self._link = link
        self._client = client
        self.peer = "-"  # the client's address, once the connection is made
        self.kicked = False  # an administrator closed it: say so instead of "shutting down"
        self.linger = min(server.config.pop3.unauthenticated_timeout, CLOSE_LINGER)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def timeout(self) -> float:
        pop3 = self._server.config.pop3
        authed = self._conn.user is not None
        return pop3.authenticated_timeout if authed else pop3.unauthenticated_timeout

    def timer(
        self,
        busy: Callable[[], bool],
        output: Callable[[], Output],
        expire: Callable[[bool], None],
    ) -> InactivityTimer:
        """The session's inactivity timer (V0002), on ``timeout``; see ``server/progress.py``."""
        return InactivityTimer(self._server.clock, self.timeout, busy, output, expire)

    def arrive(
        self, session: object, transport: asyncio.BaseTransport, *, tls: bool
    ) -> structlog.typing.FilteringBoundLogger:
        """The connection is made: name both ends; returns the session's logger."""
        peer = self._client or transport.get_extra_info("peername")
        address = endpoint(peer)
        peer_ip = str(peer[0]) if isinstance(peer, tuple) else address  # brute-force: per IP
        log = self._server.log.bind(session=self._session_id, peer=address)
        self._login.attach(address, peer_ip, log)
        here = endpoint(transport.get_extra_info("sockname"))
        self._observe.connected(self._session_id, here, address)
        self.peer = address
        self._server.sessions.add(session)
        log.info("connect", tls=tls)
        return log

    async def depart(self, session: object, log: structlog.typing.FilteringBoundLogger) -> None:
        """Release the lock, close the transport (``linger`` seconds at most), say so."""
        self._server.sessions.discard(session)
        self._observe.closed()
        try:
            await self._login.release_lock()
        except Exception:  # the connection must close whatever happened
            log.exception("session_failed")
        await self._link.close(self._server.clock, self.linger)
        log.info("disconnect", **self._observe.summary())
