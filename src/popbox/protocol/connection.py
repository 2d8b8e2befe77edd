"""Pop3Connection: the sans-IO POP3 server state machine.

Theory of operation (compare h11's ``Connection``): the I/O layer feeds received bytes
to ``receive_data`` and calls ``next_event`` in a loop.  Everything that needs no outside
knowledge (framing, parsing, state checks, CAPA, USER, STAT, LIST, UIDL, DELE, RSET,
NOOP, SASL framing) is answered here, into an output queue the I/O layer drains with
``data_to_send``.  What needs the outside world comes back as an event the I/O layer
must answer through exactly one of the methods named in the event's docstring before
calling ``next_event`` again; commands are therefore answered strictly in order, which is
what PIPELINING (RFC 2449 section 6.6) requires.

The connection never touches a socket, the disk or the clock: timers are the I/O
layer's, which reports expiry with ``timed_out``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popbox.protocol import commands as c
from popbox.protocol import sasl as auth
from popbox.protocol import transaction
from popbox.protocol.events import (
    CommandRecord,
    ConnectionSettings,
    Event,
    PasswordLogin,
    Retrieve,
    SaslCancelled,
    SaslContinue,
    SaslStart,
    Signal,
    StartTls,
    Update,
)
from popbox.protocol.framing import LineBuffer, LineTooLong
from popbox.protocol.maildrop import Maildrop
from popbox.protocol.phases import (
    Authorization,
    Awaiting,
    Closed,
    Counters,
    Phase,
    Sasl,
    Transaction,
)
from popbox.protocol.policy import capability_lines, plaintext_allowed
from popbox.protocol.replies import TERMINATOR, Err, Ok, RespCode, counted, multiline, serialise
from popbox.protocol.states import ALLOWED, State

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.protocol.message_info import MessageInfo

__all__ = [
    "CommandRecord",
    "ConnectionSettings",
    "Event",
    "PasswordLogin",
    "Pop3Connection",
    "Retrieve",
    "SaslCancelled",
    "SaslContinue",
    "SaslStart",
    "Signal",
    "StartTls",
    "Update",
]


class Pop3Connection:
    """One POP3 server-side session, bytes in and bytes out."""

    def __init__(self, settings: ConnectionSettings | None = None) -> None:
        self.settings = settings or ConnectionSettings()
        self._tls_active = self.settings.tls_active
        self._buffer = LineBuffer()
        self._phase: Phase = Authorization()
        self._counters = Counters()
        self._write(Ok(self.settings.banner))

    # -- observation ---------------------------------------------------------------

    @property
    def state(self) -> State:
        phase = self._phase
        if isinstance(phase, Awaiting):
            if isinstance(phase.event, Update):
                return State.UPDATE
            phase = phase.resume
        return _STATE_OF[type(phase)]

    @property
    def user(self) -> str | None:
        """The logged-in user, once in TRANSACTION."""
        phase = self._phase.resume if isinstance(self._phase, Awaiting) else self._phase
        return phase.user if isinstance(phase, Transaction) else None

    def run_from(self, msg: int, octets: int, count: int) -> list[int]:
        """Uids worth reading together with ``msg``'s (``Maildrop.run_from``).

        Empty outside TRANSACTION.  For the I/O layer's read-ahead; changes nothing.
        """
        phase = self._phase.resume if isinstance(self._phase, Awaiting) else self._phase
        if not isinstance(phase, Transaction):
            return []
        return phase.maildrop.run_from(msg, octets, count)

    @property
    def lines_received(self) -> int:
        return self._counters.lines

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    def take_records(self) -> list[CommandRecord]:
        """Take the protocol-log records of the commands answered since the last call."""
        records, self._counters.records = self._counters.records, []
        return records

    def data_to_send(self) -> list[bytes]:
        """Take the queued output, as chunks to write in order."""
        out, self._counters.output = self._counters.output, []
        return out

    # -- input ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not isinstance(self._phase, Closed):
            self._buffer.feed(data)

    def next_event(self) -> Event | Signal:
        """Process buffered lines until one needs the outside world, data runs out or closed."""
        while True:
            phase = self._phase
            kind = type(phase)  # phases are final classes: one dict-free check per line
            if kind is Closed:
                return Signal.CLOSED
            if kind is Awaiting:
                assert isinstance(phase, Awaiting)
                msg = f"answer {type(phase.event).__name__} before asking for the next event"
                raise RuntimeError(msg)
            sasl = kind is Sasl
            limit = self.settings.sasl_line_max if sasl else self.settings.max_command_size
            # RFC 5034 s4: the initial response on an AUTH line is bound like a response.
            auth_limit = self.settings.sasl_line_max if kind is Authorization else None
            line = self._buffer.next_line(limit, auth_limit=auth_limit)
            if line is None:
                return Signal.NEED_DATA
            if type(line) is LineTooLong:
                if sasl:  # leave SASL first: _bad_input may close, and closed must stay closed
                    self._phase = Authorization()
                self._bad_input(f"line too long: the limit is {line.limit} octets including CRLF")
                if sasl:
                    return SaslCancelled()
                continue
            assert isinstance(line, bytes)
            self._counters.lines += 1
            if sasl:
                self._counters.verb = "SASL-RESPONSE"
                return self._sasl_line(line)
            event = self._command_line(line)
            if event is not None:
                return event

    # -- answers to events ----------------------------------------------------------

    def login_succeeded(self, user: str, messages: Sequence[MessageInfo]) -> None:
        self._expect(PasswordLogin, SaslStart, SaslContinue)
        maildrop = Maildrop(messages, exact_size=self.settings.exact_rfc822_size)
        count, size = maildrop.stat()
        self._phase = Transaction(user, maildrop)
        self._write(Ok(f"logged in, {counted(count, 'message')} ({size} octets)"))

    def login_failed(self, reply: Err) -> None:
        """Refuse the login; after ``max_auth_failures`` the connection closes (C0005)."""
        self._expect(PasswordLogin, SaslStart, SaslContinue)
        self._phase = Authorization()
        self._write(reply)
        self._counters.auth_failures += 1
        if self._counters.auth_failures >= self.settings.max_auth_failures:
            self._close(Err("too many failed logins, closing connection"))

    def sasl_challenge(self, challenge: bytes) -> None:
        """Send a server challenge ("+ " and base64, RFC 5034) and wait for the response."""
        awaiting = self._expect(SaslStart, SaslContinue)
        assert isinstance(awaiting.resume, Sasl)
        self._phase = awaiting.resume
        self._record(ok=True)
        self._counters.output.append(auth.challenge_line(challenge))

    def tls_established(self) -> None:
        """The STLS handshake finished; everything learnt before it is forgotten (RFC 2595)."""
        self._expect(StartTls)
        self._tls_active = True
        self._phase = Authorization()
        self._buffer.clear()  # bytes fed before the handshake finished were plaintext

    def send_message(self, data: bytes) -> None:
        """Answer ``Retrieve`` with the message's wire form (whole, or cut by TOP)."""
        awaiting = self._expect(Retrieve)
        event = awaiting.event
        assert isinstance(event, Retrieve)
        transaction = awaiting.resume
        assert isinstance(transaction, Transaction)
        self._phase = transaction
        if event.lines is None:
            transaction.maildrop.mark_retrieved(event.msg)
            size = transaction.maildrop.size_of(event.info)
            self._record(ok=True)
            self._counters.output.append(b"+OK %d octets\r\n" % size)  # serialise's line
        else:
            self._write(Ok("top of message follows"))
        self._counters.output.append(data)
        if data and not data.endswith(b"\r\n"):
            self._counters.output.append(b"\r\n")
        self._counters.output.append(TERMINATOR)

    def message_gone(self) -> None:
        """The message was removed after this session's snapshot (C0004)."""
        awaiting = self._expect(Retrieve)
        assert isinstance(awaiting.event, Retrieve)
        self._phase = awaiting.resume
        event = awaiting.event
        self._write(Err(f"message {event.msg} was deleted by another session"))

    def store_failed(self) -> None:
        """The store could not answer now: ``-ERR [SYS/TEMP]`` and carry on."""
        awaiting = self._expect(PasswordLogin, SaslStart, SaslContinue, Retrieve)
        self._phase = awaiting.resume
        if not isinstance(awaiting.resume, Transaction):
            self._phase = Authorization()
        self._write(Err("the mail store is not available, try again later", RespCode.SYS_TEMP))

    def update_finished(self, *, ok: bool) -> None:
        """UPDATE done: all marked messages removed, or none of them (V0006)."""
        event = self._expect(Update).event
        assert isinstance(event, Update)
        if ok:
            self._close(Ok(f"signing off, {counted(len(event.deleted), 'message')} deleted"))
        else:
            self._close(
                Err("messages marked as deleted were not removed, try again", RespCode.SYS_TEMP)
            )

    def timed_out(self, seconds: float) -> None:
        """The inactivity timer ran out: one -ERR line, then close, no UPDATE (V0003)."""
        self._close(Err(f"connection closed after {counted(seconds, 'second')} of inactivity"))

    def shutdown(self) -> None:
        """The server is stopping: tell the client, close, no UPDATE."""
        self._close(Err("server shutting down, try again later", RespCode.SYS_TEMP))

    # -- internals ------------------------------------------------------------------

    def _command_line(self, line: bytes) -> Event | None:
        command = c.parse_command(line, single_space=self.settings.single_space)
        if isinstance(command, c.ParseError):
            self._counters.verb = c.verb_of(line)
            self._bad_input(command.text)
            return None
        kind = type(command)
        verb = self._counters.verb = c.VERBS[kind]
        phase = self._phase
        if kind not in _ALLOWED_IN[type(phase)]:
            text = (
                f"{verb} is not allowed before login, log in first"
                if isinstance(phase, Authorization)
                else f"{verb} is only allowed before login"
            )
            self._bad_input(text)
            return None
        if kind is c.Capa:  # the same in both states
            self._write_multiline(self._capabilities())
            return None
        if isinstance(phase, Transaction):
            return self._transaction(command, phase)
        assert isinstance(phase, Authorization)
        return self._authorization(command, phase)

    def _authorization(self, command: c.Command, phase: Authorization) -> Event | None:
        match command:
            case c.User(name):
                if not plaintext_allowed(self.settings, tls_active=self._tls_active, sasl=False):
                    self._write(Err("USER/PASS is only allowed over TLS, issue STLS first"))
                else:
                    phase.pending_user = name  # V0008/V0009: +OK whether it exists or not
                    self._write(Ok("send PASS"))
            case c.Pass(password):
                if phase.pending_user is None:
                    self._bad_input("PASS must follow a successful USER")
                else:
                    return self._await(PasswordLogin(phase.pending_user, password), phase)
            case c.Auth(mechanism, initial):
                return self._auth(mechanism, initial, phase)
            case c.Stls():
                return self._stls(phase)
            case c.Quit():
                self._close(Ok("signing off"))  # no UPDATE from AUTHORIZATION (s6)
        return None

    def _transaction(self, command: c.Command, phase: Transaction) -> Event | None:
        reply = transaction.answer(command, phase.maildrop)
        if isinstance(reply, Retrieve | Update):
            return self._await(reply, phase)
        self._reply(reply)
        return None

    def _auth(
        self, mechanism: str | None, initial: str | None, phase: Authorization
    ) -> Event | None:
        request = auth.auth_request(self.settings, mechanism, initial, tls_active=self._tls_active)
        if isinstance(request, SaslStart):
            phase.pending_user = None
            return self._await(request, Sasl(request.mechanism))
        self._reply(request)
        return None

    def _sasl_line(self, line: bytes) -> Event:
        phase = self._phase
        assert isinstance(phase, Sasl)
        response = auth.response(line)
        if isinstance(response, Err):  # "*" or bad base64: the exchange is over
            self._phase = Authorization()
            self._write(response)
            return SaslCancelled()
        return self._await(SaslContinue(response), phase)

    def _stls(self, phase: Authorization) -> Event | None:
        if self._tls_active:
            self._write(Err("already using TLS"))
        elif not self.settings.stls_available:
            self._write(Err("TLS is not available on this port"))
        else:
            self._write(Ok("begin TLS negotiation"))
            # RFC 2595 s4: pipelined plaintext after STLS must not reach the TLS session.
            self._buffer.clear()
            return self._await(StartTls(), phase)
        return None

    def _capabilities(self) -> bytes:
        before_login = self.state is State.AUTHORIZATION
        lines = capability_lines(
            self.settings, tls_active=self._tls_active, before_login=before_login
        )
        return multiline(Ok("capability list follows"), lines)

    def _bad_input(self, text: str) -> None:
        self._write(Err(text))
        self._counters.bad_commands += 1
        if self._counters.bad_commands >= self.settings.max_bad_commands:
            self._close(Err("too many invalid commands, closing connection"))

    def _await(self, event: Event, resume: Authorization | Sasl | Transaction) -> Event:
        self._phase = Awaiting(event, resume)
        return event

    def _expect(self, *kinds: type) -> Awaiting:
        phase = self._phase
        if not isinstance(phase, Awaiting) or not isinstance(phase.event, kinds):
            msg = f"no pending {' or '.join(k.__name__ for k in kinds)} to answer"
            raise RuntimeError(msg)  # noqa: TRY004 - a bug in the I/O layer, never client-triggered
        return phase

    def _write(self, reply: Ok | Err) -> None:
        self._record(ok=isinstance(reply, Ok))
        self._counters.output.append(serialise(reply))

    def _reply(self, reply: Ok | Err | bytes) -> None:
        """Write a status line, or a serialised multi-line reply."""
        if isinstance(reply, bytes):
            self._write_multiline(reply)
        else:
            self._write(reply)

    def _write_multiline(self, data: bytes) -> None:
        self._record(ok=True)
        self._counters.output.append(data)

    def _record(self, *, ok: bool) -> None:
        if self._counters.verb is not None:
            self._counters.records.append(CommandRecord(self._counters.verb, ok))
            self._counters.verb = None

    def _close(self, reply: Ok | Err) -> None:
        if not isinstance(self._phase, Closed):
            self._write(reply)
            self._phase = Closed()
            self._buffer.clear()


# What _command_line may meet: the phases a command line is read in (C0002/C0003).
_ALLOWED_IN: dict[type, frozenset[type[c.Command]]] = {
    Authorization: ALLOWED[State.AUTHORIZATION],
    Transaction: ALLOWED[State.TRANSACTION],
}

_STATE_OF: dict[type, State] = {
    Authorization: State.AUTHORIZATION,
    Sasl: State.SASL,
    Transaction: State.TRANSACTION,
    Closed: State.CLOSED,
}
