"""Listeners, the running server, and graceful shutdown.

``Pop3Server.start`` binds every configured address (plain with STLS, implicit TLS) and
reports each real address once it accepts, so port 0 gives an ephemeral port whose
number is printed.  ``stop`` stops accepting, lets sessions finish up to
``shutdown_grace`` seconds, then ends the rest with a -ERR line and no UPDATE.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import socket
from typing import TYPE_CHECKING

from popbox.net.bind import address_of, bind_listeners
from popbox.observability.protocol_log import open_protocol_log
from popbox.protocol.connection import ConnectionSettings
from popbox.protocol.profiles import PROFILES, greeting
from popbox.server.accept import Acceptor
from popbox.server.session import Pop3Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.config import RetentionConfig
    from popbox.net.bind import Bound, Listening
    from popbox.server.context import ServerContext

__all__ = ["Pop3Server", "connection_settings", "expire_capability"]


def expire_capability(retention: RetentionConfig) -> str:
    """The EXPIRE argument (RFC 2449 s6.7): the smallest retention period, or NEVER."""
    days = [d for d in (retention.retrieved_days, retention.unretrieved_days) if d is not None]
    return str(min(days)) if days else "NEVER"


def connection_settings(context: ServerContext, *, implicit_tls: bool) -> ConnectionSettings:
    """The protocol settings of one listener, from the configuration and the registry."""
    pop3 = context.config.pop3
    wire = PROFILES[context.config.compat]
    return ConnectionSettings(
        banner=greeting(wire, pop3.banner, socket.gethostname()),
        max_command_size=pop3.max_command_size,
        sasl_line_max=pop3.sasl_line_max,
        single_space=pop3.single_space_separators,
        exact_rfc822_size=pop3.exact_rfc822_size,
        newest_first=pop3.message_order == "descending",
        login_type=pop3.login_type,
        tls_active=implicit_tls,
        stls_available=context.tls is not None and not implicit_tls,
        max_bad_commands=pop3.max_bad_commands,
        max_auth_failures=pop3.max_auth_failures,
        expire=expire_capability(context.config.retention),
        sasl_mechanisms=context.registry.offered(),
        wire=wire,
    )


class Pop3Server:
    """The POP3 listeners of one process."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self._acceptors: list[Acceptor] = []
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)

    async def start(self, sockets: Sequence[Bound] | None = None) -> list[Listening]:
        """Accept on ``sockets`` (bound by a supervisor), else bind the configured ones."""
        if sockets is None:
            sockets = bind_listeners(self.context.config)
        if self.context.config.protocol_log.enabled and self.context.protocol_log is None:
            self.context.protocol_log = open_protocol_log(self.context.config, self.context.log)
        listening: list[Listening] = []
        for kind, sock in sockets:
            if kind == "pop3s" and self.context.tls is None:
                msg = "pop3.tls_listen needs a TLS certificate"
                raise RuntimeError(msg)
            acceptor = Acceptor(
                self.context, kind, sock, functools.partial(self._new_session, kind)
            )
            acceptor.start()
            self._acceptors.append(acceptor)
            listening.append((kind, *address_of(sock)))
        return listening

    def _new_session(self, kind: str, client: tuple[str, int]) -> Pop3Protocol:
        # Settings are taken per connection, so a reload (SIGHUP) applies to the next one.
        settings = connection_settings(self.context, implicit_tls=kind == "pop3s")
        session_id = f"{self._prefix}-{next(self._ids)}"
        return Pop3Protocol(self.context, settings, session_id, client=client)

    async def stop(self) -> None:
        """Stop accepting, drain sessions up to ``shutdown_grace``, then close the rest."""
        for acceptor in self._acceptors:
            await acceptor.stop_accepting()
        sessions = list(self.context.sessions)
        if sessions:
            waiting = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
            _, pending = await asyncio.wait(
                waiting, timeout=self.context.config.pop3.shutdown_grace
            )
            for session in list(self.context.sessions):
                session.shutdown()
            if pending:
                await asyncio.wait(pending, timeout=5)
        connections = [task for a in self._acceptors for task in a.connections]
        if connections:
            await asyncio.wait(connections, timeout=5)
        log, self.context.protocol_log = self.context.protocol_log, None
        if log is not None:  # every session has ended: write out what they logged
            await asyncio.to_thread(log.close)
