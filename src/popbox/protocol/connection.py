"""Pop3Connection: the sans-IO POP3 server state machine.

Theory of operation (compare h11's ``Connection``): the I/O layer feeds received bytes
to ``receive_data`` and calls ``next_event`` in a loop.  Everything that needs no outside
knowledge (framing, parsing, state checks, CAPA, USER, STAT, LIST, UIDL, DELE, RSET,
NOOP, SASL framing) is answered here, into an output queue the I/O layer drains with
``data_to_send``.  What needs the outside world comes back as an event the I/O layer
must answer through exactly one of the methods named in the event's docstring before
calling ``next_event`` again; commands are therefore answered strictly in order, which is
what PIPELINING (RFC 2449 section 6.6) requires.

Pacing: one ``next_event`` call answers at most ``PACE_LINES`` lines and stops once
``PACE_OCTETS`` of output are queued, returning ``Signal.PAUSED``; so however much a client
pipelines (2 MiB of CAPA, 40,000 UIDLs), the I/O layer gets control back after a bounded
amount of work and output, and can send it, let other connections run, and stop reading
while the client does not take its replies.

The connection never touches a socket, the disk or the clock: timers are the I/O
layer's, which reports expiry with ``timed_out``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from popbox.protocol import commands as c
from popbox.protocol import lang, transaction
from popbox.protocol import sasl as auth
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
    ALLOWED_IN,
    STATE_OF,
    Authorization,
    Awaiting,
    Closed,
    Counters,
    Phase,
    Sasl,
    Transaction,
)
from popbox.protocol.policy import capability_lines, plaintext_allowed
from popbox.protocol.profiles import on_wire, texts_of
from popbox.protocol.replies import TERMINATOR, Err, Ok, RespCode, counted, multiline, serialise
from popbox.protocol.states import State

if TYPE_CHECKING:
    from collections.abc import Sequence

    from popbox.protocol.message_info import MessageInfo

__all__ = [
    "PACE_LINES",
    "PACE_OCTETS",
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

# One turn of next_event: a few milliseconds of the slowest replies (LIST/UIDL of a large
# maildrop) at most, and no more output than a socket buffer takes at once.
PACE_LINES = 64
PACE_OCTETS = 64 * 1024


# What a store failure is answered with, by the response code the I/O layer chose.
_STORE_FAILED = {
    RespCode.SYS_TEMP: "the mail store is not available, try again later",
    RespCode.SYS_PERM: "the mail store cannot do this until an administrator acts",
    RespCode.IN_USE: "maildrop is locked by another session, try again later",
}


class Pop3Connection:
    """One POP3 server-side session, bytes in and bytes out."""

    def __init__(self, settings: ConnectionSettings | None = None) -> None:
        self.settings = settings or ConnectionSettings()
        self._tls_active = self.settings.tls_active
        self._buffer = LineBuffer()
        self._phase: Phase = Authorization()
        self._counters = Counters()
        self._exchange = self.settings.wire.exchange
        self._texts = texts_of(self.settings.wire)
        self._status_lines: list[bytes] | None = None  # kept once keep_status_lines is called
        self._capa: dict[tuple[bool, bool], bytes] = {}
        self._write(Ok(self.settings.banner))

    # -- observation ---------------------------------------------------------------

    @property
    def state(self) -> State:
        phase = self._phase
        if isinstance(phase, Awaiting):
            if isinstance(phase.event, Update):
                return State.UPDATE
            phase = phase.resume
        return STATE_OF[type(phase)]

    @property
    def user(self) -> str | None:
        """The logged-in user, once in TRANSACTION."""
        phase = self._phase.resume if isinstance(self._phase, Awaiting) else self._phase
        return phase.user if isinstance(phase, Transaction) else None

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

    def keep_status_lines(self) -> None:
        """From now on, keep each status line written for ``take_status_lines``.

        The protocol log's channel: status lines only, never a message body or a listing
        line, whatever its bytes look like.
        """
        if self._status_lines is None:
            self._status_lines = []

    def take_status_lines(self) -> list[bytes]:
        """The status lines written since the last call (empty unless kept)."""
        if not self._status_lines:
            return []
        lines, self._status_lines = self._status_lines, []
        return lines

    def data_to_send(self) -> list[bytes]:
        """Take the queued output, as chunks to write in order."""
        out, self._counters.output = self._counters.output, []
        self._counters.queued = 0
        return out

    # -- input ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not isinstance(self._phase, Closed):
            self._buffer.feed(data)

    @property
    def buffered(self) -> int:
        """Octets received and not yet processed (the I/O layer stops reading above a cap)."""
        return self._buffer.size

    def next_event(self) -> Event | Signal:
        """Process buffered lines until one needs the outside world, data runs out or closed.

        Returns ``Signal.PAUSED`` after ``PACE_LINES`` lines or once ``PACE_OCTETS`` of
        output are queued (see the module docstring): nothing is lost, call again.
        """
        counters = self._counters
        answered = 0
        while True:
            phase = self._phase
            kind = type(phase)  # phases are final classes: one dict-free check per line
            if kind is Closed:
                return Signal.CLOSED
            if kind is Awaiting:
                _unanswered(phase)
            if answered >= PACE_LINES or counters.queued >= PACE_OCTETS:
                return Signal.PAUSED
            sasl = kind is Sasl
            limit = self.settings.sasl_line_max if sasl else self.settings.max_command_size
            # RFC 5034 s4: the initial response on an AUTH line is bound like a response.
            auth_limit = self.settings.sasl_line_max if kind is Authorization else None
            line = self._buffer.next_line(limit, auth_limit=auth_limit)
            if line is None:
                return Signal.NEED_DATA
            if type(line) is LineTooLong:
                if self._too_long(line, sasl=sasl):
                    return SaslCancelled()
                continue
            assert isinstance(line, bytes)
            counters.lines += 1
            answered += 1
            if sasl:
                counters.verb = "SASL-RESPONSE"
                return self._sasl_line(line)
            event = self._command_line(line)
            if event is not None:
                return event

    def _too_long(self, line: LineTooLong, *, sasl: bool) -> bool:
        """Refuse an over-long line; True: it cancelled a SASL exchange."""
        if sasl:  # leave SASL first: _bad_input may close, and closed must stay closed
            self._phase = Authorization()
        self._bad_input(f"line too long: the limit is {line.limit} octets including CRLF")
        return sasl

    # -- answers to events ----------------------------------------------------------

    def login_succeeded(self, user: str, messages: Sequence[MessageInfo]) -> None:
        self._expect(PasswordLogin, SaslStart, SaslContinue)
        s = self.settings
        maildrop = Maildrop(messages, exact_size=s.exact_rfc822_size, newest_first=s.newest_first)
        count, size = maildrop.stat()
        self._phase = Transaction(user, maildrop)
        self._write(Ok(self._texts.logged_in(count, size)))

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
        self._queue(auth.challenge_line(challenge))

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
            self._status(b"+OK %d octets\r\n" % size)  # serialise's line
        else:
            self._write(Ok("top of message follows"))
        output = self._counters.output
        output.append(data)
        if data and not data.endswith(b"\r\n"):
            output.append(b"\r\n")
        output.append(TERMINATOR)
        self._counters.queued += len(data) + 5

    def message_gone(self) -> None:
        """The message was removed after this session's snapshot (C0004)."""
        awaiting = self._expect(Retrieve)
        assert isinstance(awaiting.event, Retrieve)
        self._phase = awaiting.resume
        event = awaiting.event
        self._write(Err(f"message {event.msg} was deleted by another session"))

    def store_failed(self, code: RespCode = RespCode.SYS_TEMP, text: str | None = None) -> None:
        """The store (or a user directory) could not answer: one ``-ERR [code]`` (RFC 3206)
        and carry on.  ``text`` replaces the store's standard text for ``code``."""
        awaiting = self._expect(PasswordLogin, SaslStart, SaslContinue, Retrieve)
        self._phase = awaiting.resume
        if not isinstance(awaiting.resume, Transaction):
            self._phase = Authorization()
        if text is None:
            text = _STORE_FAILED.get(code, _STORE_FAILED[RespCode.SYS_TEMP])
        self._write(Err(text, code))

    def update_finished(self, *, ok: bool, code: RespCode = RespCode.SYS_TEMP) -> None:
        """UPDATE done: all marked messages removed, or none of them (V0006)."""
        event = self._expect(Update).event
        assert isinstance(event, Update)
        if ok:
            self._close(Ok(self._texts.signed_off(len(event.deleted))))
        else:  # SYS/PERM: trying again will not help
            retry = "" if code is RespCode.SYS_PERM else ", try again"
            self._close(Err(f"messages marked as deleted were not removed{retry}", code))

    def update_unknown(self) -> None:
        """UPDATE's outcome could not be learnt: say so, never a guess (close, no retry)."""
        self._expect(Update)
        text = "could not learn whether messages marked as deleted were removed, log in again"
        self._close(Err(text + " to see", RespCode.SYS_TEMP))

    def timed_out(self, seconds: float) -> None:
        """The inactivity timer ran out: one -ERR line, then close, no UPDATE (V0003)."""
        self._close(Err(f"connection closed after {counted(seconds, 'second')} of inactivity"))

    def shutdown(self) -> None:
        """The server is stopping: tell the client, close, no UPDATE."""
        self._close(Err("server shutting down, try again later", RespCode.SYS_TEMP))

    # -- internals ------------------------------------------------------------------

    def _command_line(self, line: bytes) -> Event | None:
        command = c.parse_command(line, single_space=self.settings.single_space)
        if self._exchange and isinstance(command, c.Lang):  # Exchange lists no LANG
            command = c.ParseError("unknown command")
        if isinstance(command, c.ParseError):
            self._counters.verb = c.verb_of(line)
            self._bad_input(command.text)
            return None
        kind = type(command)
        verb = self._counters.verb = c.VERBS[kind]
        phase = self._phase
        if isinstance(command, c.User) and command.problem and not self._exchange:
            self._bad_input(command.problem)
            return None
        if kind not in ALLOWED_IN[type(phase)]:
            self._bad_input(self._texts.not_allowed(verb, isinstance(phase, Authorization)))
            return None
        if kind is c.Capa or kind is c.Lang:  # the same in both states (RFC 6856 s3.1)
            self._reply(
                lang.answer(command) if isinstance(command, c.Lang) else self._capabilities()
            )
            return None
        if isinstance(phase, Transaction):
            return self._transaction(command, phase)
        assert isinstance(phase, Authorization)
        return self._authorization(command, phase)

    def _authorization(self, command: c.Command, phase: Authorization) -> Event | None:
        match command:
            case c.User(name, problem):  # V0008/V0009: +OK whether it exists or not
                if self._exchange or self._plaintext_ok():  # Exchange: PASS checks (V0008)
                    phase.pending_user, phase.name_valid = name, problem is None
                    self._write(Ok(self._texts.user))
                else:
                    self._write(Err(self._texts.plaintext_refused))
            case c.Pass(password):
                return self._pass(password, phase)
            case c.Auth(mechanism, initial):
                return self._auth(mechanism, initial, phase)
            case c.Stls():
                return self._stls(phase)
            case c.Quit():  # no UPDATE from AUTHORIZATION (s6)
                self._close(Ok(self._texts.signed_off(None)))
        return None

    def _pass(self, password: str, phase: Authorization) -> Event | None:
        if phase.pending_user is None:
            self._bad_input(self._texts.pass_without_user)
        elif not self._plaintext_ok():  # V0010; only Exchange profiles get here
            self._write(Err(self._texts.plaintext_refused))
        else:
            login = PasswordLogin(phase.pending_user, password, phase.name_valid)
            return self._await(login, phase)
        return None

    def _plaintext_ok(self) -> bool:
        return plaintext_allowed(self.settings, tls_active=self._tls_active, sasl=False)

    def _transaction(self, command: c.Command, phase: Transaction) -> Event | None:
        reply = transaction.answer(command, phase.maildrop, phase.listings)
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
            self._write(Err(self._texts.already_tls))
        elif not self.settings.stls_available:
            self._write(Err(self._texts.no_tls))
        else:
            self._write(Ok(self._texts.stls))
            # RFC 2595 s4: pipelined plaintext after STLS must not reach the TLS session.
            self._buffer.clear()
            return self._await(StartTls(), phase)
        return None

    def _capabilities(self) -> bytes:
        """CAPA's reply, built once per (before login, TLS) and kept: it is often repeated."""
        key = (self.state is State.AUTHORIZATION, self._tls_active)
        reply = self._capa.get(key)
        if reply is None:
            lines = capability_lines(self.settings, tls_active=key[1], before_login=key[0])
            reply = self._capa[key] = multiline(Ok(self._texts.capa), lines)
        return reply

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
        self._status(serialise(on_wire(self.settings.wire, reply)))

    def _reply(self, reply: Ok | Err | bytes) -> None:
        """Write a status line, or a serialised multi-line reply."""
        if isinstance(reply, bytes):
            self._write_multiline(reply)
        else:
            self._write(reply)

    def _write_multiline(self, data: bytes) -> None:
        self._record(ok=True)
        self._queue(data)
        if self._status_lines is not None:
            self._status_lines.append(data[: data.find(b"\n") + 1])

    def _status(self, line: bytes) -> None:
        """Queue a status line (+OK/-ERR and its text)."""
        self._queue(line)
        if self._status_lines is not None:
            self._status_lines.append(line)

    def _queue(self, data: bytes) -> None:
        self._counters.output.append(data)
        self._counters.queued += len(data)

    def _record(self, *, ok: bool) -> None:
        if self._counters.verb is not None:
            self._counters.records.append(CommandRecord(self._counters.verb, ok))
            self._counters.verb = None

    def _close(self, reply: Ok | Err) -> None:
        if not isinstance(self._phase, Closed):
            self._write(reply)
            self._phase = Closed()
            self._buffer.clear()


def _unanswered(phase: Phase) -> NoReturn:
    assert isinstance(phase, Awaiting)
    msg = f"answer {type(phase.event).__name__} before asking for the next event"
    raise RuntimeError(msg)
