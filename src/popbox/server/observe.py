"""What a session reports about itself: metrics, per-user limits, the protocol logs.

Theory of operation: the session (``server/session.py``) calls a ``SessionObserver`` at a
few points (bytes in, replies out, login outcome, end), and the observer turns them into
Prometheus counters, the node's per-user session count, and, for the users named in
``server.protocol_log_users``, a ``protocol`` log event per client line and per server
status line.  That log starts only once the user is logged in, so it never sees USER,
PASS or AUTH lines.  Server lines reach it through their own channel: the connection's
status lines (``Pop3Connection.take_status_lines``), which never include a message body
(RETR, TOP) or a listing line, whatever their bytes look like.

With ``[protocol_log] enabled`` every session also goes to the Exchange-style protocol log
(``observability/protocol_log.py``) from the moment it connects: ``+`` at connect, each
client line (``<``) and status line (``>``) from the connection's transcript, which has
PASS, AUTH payloads and SASL responses redacted by the connection and never holds a
message body or a listing line, ``*`` at login, ``-`` at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Sequence

    import structlog

    from popbox.observability.protocol_log import ProtocolLog as ExchangeLog
    from popbox.protocol.connection import CommandRecord, Pop3Connection
    from popbox.server.context import ServerContext
    from popbox.server.limits import Refused

__all__ = ["ExchangeLogTap", "ProtocolLog", "SessionObserver"]

LOGGED_LINE_MAX = 200  # characters of one logged line; the rest is cut


class ProtocolLog:
    """Client lines and server status lines of one logged-in session.

    Each line goes to ``log`` (``server.protocol_log_users``) and to ``tap`` (an operator
    watching the user live, ``server/roster.py``), whichever are set.
    """

    def __init__(
        self,
        log: structlog.typing.FilteringBoundLogger | None,
        tap: Callable[[str, str], None] | None = None,
    ) -> None:
        self._log = log
        self.tap = tap
        self._partial = b""

    def received(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[: LOGGED_LINE_MAX + 2]
        for line in lines:
            self._line("in", _printable(line))

    def sent(self, status_lines: Sequence[bytes]) -> None:
        for line in status_lines:
            self._line("out", _printable(line.rstrip(b"\n")))

    def _line(self, direction: str, text: str) -> None:
        if self._log is not None:
            self._log.info("protocol", direction=direction, line=text)
        if self.tap is not None:
            self.tap(direction, text)


def _printable(line: bytes) -> str:
    text = line.rstrip(b"\r").decode("utf-8", "replace")[:LOGGED_LINE_MAX]
    return "".join(c if c.isprintable() else "?" for c in text)


class ExchangeLogTap:
    """One session's lines in the Exchange-style protocol log, numbered from 0."""

    def __init__(
        self, log: ExchangeLog, conn: Pop3Connection, session: str, local: str, remote: str
    ) -> None:
        self._log = log
        self._conn = conn
        self._ids = (session, local, remote)
        self._sequence = 0
        conn.outgoing.keep_transcript()

    def event(self, when: float, kind: str, data: str = "", context: str = "") -> None:
        session, local, remote = self._ids
        self._log.event(when, session, self._sequence, local, remote, kind, data, context)
        self._sequence += 1

    def transcript(self, when: float) -> None:
        for kind, line in self._conn.outgoing.take_transcript():
            self.event(when, kind, _printable(line.rstrip(b"\n")))


class SessionObserver:
    """The reporting side of one session."""

    def __init__(self, server: ServerContext, conn: Pop3Connection, session_id: str) -> None:
        self._server = server
        self._session_id = session_id
        self._conn = conn
        self._metrics = server.metrics
        self._user: str | None = None  # counted against max_sessions_per_user
        self._protocol_log: ProtocolLog | None = None
        self._exchange_log: ExchangeLogTap | None = None
        self._commands = 0
        self._received = 0
        self._sent = 0
        self._since = server.clock.wall()
        self._listed_log: structlog.typing.FilteringBoundLogger | None = None
        self._logged_in_as: str | None = None

    def connected(self, session: str, local: str, remote: str) -> None:
        """The connection is made: the Exchange-style protocol log starts here."""
        log = self._server.protocol_log
        if log is not None:
            self._exchange_log = ExchangeLogTap(log, self._conn, session, local, remote)
            self._exchange_log.event(self._server.clock.wall(), "+")

    def received(self, data: bytes) -> None:
        self._received += len(data)
        self._metrics.traffic.received += len(data)
        if self._protocol_log is not None:
            self._protocol_log.received(data)

    def flushed(self, records: Sequence[CommandRecord], chunks: Sequence[bytes]) -> int:
        """Count what is about to be written; returns its size in octets."""
        traffic = self._metrics.traffic
        for record in records:
            traffic.command(record.verb, ok=record.ok)
        sent = sum(map(len, chunks))
        traffic.sent += sent
        self._sent += sent
        self._commands += len(records)
        if self._protocol_log is not None:
            self._protocol_log.sent(self._conn.take_status_lines())
        if self._exchange_log is not None:
            self._exchange_log.transcript(self._server.clock.wall())
        return sent

    def unsent(self, octets: int) -> None:
        """The connection was dropped with ``octets`` of what was counted never written.

        Only the session's own total is corrected: Prometheus counters never go down.
        """
        self._sent -= octets

    @property
    def sent(self) -> int:
        """Octets handed to the transport so far."""
        return self._sent

    def summary(self) -> dict[str, int]:
        """What the disconnect log line says of the session."""
        return {"commands": self._commands, "octets_in": self._received, "octets_out": self._sent}

    async def admit_login(self, user: str, mechanism: str) -> Refused | None:
        """Count the session against the user's limit, or say which limit refuses it."""
        refused = await self._server.limits.login(user)
        if refused is None:
            self._user = user
        else:
            self.login_result(mechanism, "limited")
        return refused

    def login_result(self, mechanism: str, result: str) -> None:
        """A login that did not succeed: failure, lockout, locked, store_error, limited."""
        if result != "limited":
            self._release_user()
        self._metrics.login(mechanism, result)

    def logged_in(
        self, user: str, mechanism: str, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._metrics.login(mechanism, "success")
        self._logged_in_as = user
        if self._exchange_log is not None:
            self._exchange_log.event(self._server.clock.wall(), "*", "logged in", user)
        if user in self._server.config.server.protocol_log_users:
            self._listed_log = log
        self.tap(self._server.protocol_taps.get(user))

    def tap(self, sink: Callable[[dict[str, Any]], None] | None) -> None:
        """From now on copy (None: stop copying) this session's protocol lines to ``sink``.

        Only once logged in: the lines before the login are USER, PASS and AUTH.
        """
        user = self._logged_in_as
        if user is None:
            return
        tap = None
        if sink is not None:
            session = self._session_id

            def tap(direction: str, line: str) -> None:
                at = self._server.clock.wall()
                sink(
                    {
                        "session": session,
                        "user": user,
                        "direction": direction,
                        "line": line,
                        "at": at,
                    }
                )

        # One read into a local: the compiled build (mypyc) narrowed the attribute in the
        # elif after the compound test above wrongly, and failed on None at run time.
        log = self._protocol_log
        if log is not None:
            log.tap = tap
        elif tap is not None or self._listed_log is not None:
            self._protocol_log = ProtocolLog(self._listed_log, tap)
            self._conn.keep_status_lines()

    def describe(
        self, peer: str, mechanism: str | None, transport: asyncio.BaseTransport | None
    ) -> dict[str, Any]:
        """What the admin API lists of this session (``server/roster.py``)."""
        tls = transport.get_extra_info("ssl_object") if transport is not None else None
        return {
            "id": self._session_id,
            "user": self._conn.user,
            "peer": peer,
            "mechanism": mechanism,
            "tls": tls.version() if tls is not None else None,
            "since": self._since,
            "commands": self._commands,
            "octets_in": self._received,
            "octets_out": self._sent,
        }

    def closed(self) -> None:
        self._release_user()
        tap, self._exchange_log = self._exchange_log, None
        if tap is not None:
            now = self._server.clock.wall()
            tap.transcript(now)
            tap.event(now, "-")

    def _release_user(self) -> None:
        if self._user is not None:
            self._server.limits.logout(self._user)
            self._user = None
