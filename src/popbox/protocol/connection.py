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

from typing import TYPE_CHECKING

from popbox.protocol import answers, authorization, lang, transaction
from popbox.protocol import commands as c
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
from popbox.protocol.outgoing import SASL_RESPONSE, Outgoing, redacted
from popbox.protocol.phases import (
    ALLOWED_IN,
    Authorization,
    Awaiting,
    Closed,
    Counters,
    Phase,
    Sasl,
    Transaction,
    expect,
    state_of,
    unanswered,
    user_of,
)
from popbox.protocol.policy import Capabilities
from popbox.protocol.profiles import texts_of
from popbox.protocol.replies import Err, Ok, RespCode
from popbox.protocol.states import State
from popbox.protocol.utf8 import UTF8_REFUSED, needs_utf8

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
        # The output queue and the protocol log's channels (``outgoing.py``); the I/O
        # layer reads the transcript from it (``keep_transcript``, ``take_transcript``).
        self.outgoing = self._out = Outgoing(self.settings.wire)
        self._utf8 = False  # the UTF8 command has put the session in UTF-8 mode (RFC 6856)
        self._capa = Capabilities(self.settings, self._texts.capa)
        self._out.write(Ok(self.settings.banner))

    # -- observation ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return state_of(self._phase)

    @property
    def user(self) -> str | None:
        """The logged-in user, once in TRANSACTION."""
        return user_of(self._phase)

    @property
    def lines_received(self) -> int:
        return self._counters.lines

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    def take_records(self) -> list[CommandRecord]:
        """Take the protocol-log records of the commands answered since the last call."""
        return self._out.take_records()

    def keep_status_lines(self) -> None:
        """From now on, keep each status line written for ``take_status_lines``.

        The protocol log's channel: status lines only, never a message body or a listing
        line, whatever its bytes look like.
        """
        self._out.keep_status_lines()

    def take_status_lines(self) -> list[bytes]:
        """The status lines written since the last call (empty unless kept)."""
        return self._out.take_status_lines()

    def data_to_send(self) -> list[bytes]:
        """Take the queued output, as chunks to write in order."""
        return self._out.take()

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
        out = self._out
        answered = 0
        while True:
            phase = self._phase
            kind = type(phase)  # phases are final classes: one dict-free check per line
            if kind is Closed:
                return Signal.CLOSED
            if kind is Awaiting:
                unanswered(phase)
            if answered >= PACE_LINES or out.queued >= PACE_OCTETS:
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
                out.verb = "SASL-RESPONSE"
                out.client_line(b"*" if line == b"*" else SASL_RESPONSE)
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
        expect(self._phase, PasswordLogin, SaslStart, SaslContinue)
        self._phase, reply = answers.logged_in(user, messages, self.settings, self._texts)
        self._out.write(reply)

    def login_failed(self, reply: Err) -> None:
        """Refuse the login; after ``max_auth_failures`` the connection closes (C0005)."""
        expect(self._phase, PasswordLogin, SaslStart, SaslContinue)
        self._phase = Authorization()
        self._out.write(reply)
        self._counters.auth_failures += 1
        if self._counters.auth_failures >= self.settings.max_auth_failures:
            self._close(Err(self._texts.too_many_failures))

    def sasl_challenge(self, challenge: bytes) -> None:
        """Send a server challenge ("+ " and base64, RFC 5034) and wait for the response."""
        awaiting = expect(self._phase, SaslStart, SaslContinue)
        assert isinstance(awaiting.resume, Sasl)
        self._phase = awaiting.resume
        self._out.record(ok=True)
        self._out.queue(auth.challenge_line(challenge))

    def tls_established(self) -> None:
        """The STLS handshake finished; everything learnt before it is forgotten (RFC 2595)."""
        expect(self._phase, StartTls)
        self._tls_active = True
        self._phase = Authorization()
        self._buffer.clear()  # bytes fed before the handshake finished were plaintext

    def send_message(self, data: bytes) -> None:
        """Answer ``Retrieve`` with the message's wire form (whole, or cut by TOP)."""
        awaiting = expect(self._phase, Retrieve)
        event = awaiting.event
        assert isinstance(event, Retrieve)
        transaction = awaiting.resume
        assert isinstance(transaction, Transaction)
        self._phase = transaction
        if not (self._utf8 or self._exchange) and needs_utf8(data):
            self._out.write(Err(f"message {event.msg} {UTF8_REFUSED}", RespCode.UTF8))
            return
        if event.lines is None:
            transaction.maildrop.mark_retrieved(event.msg)
            size = transaction.maildrop.size_of(event.info)
            self._out.record(ok=True)
            self._out.status(b"+OK %d octets\r\n" % size)  # serialise's line
        else:
            self._out.write(Ok("top of message follows"))
        self._out.body(data)

    def message_gone(self) -> None:
        """The message was removed after this session's snapshot (C0004)."""
        awaiting = expect(self._phase, Retrieve)
        assert isinstance(awaiting.event, Retrieve)
        self._phase = awaiting.resume
        event = awaiting.event
        self._out.write(Err(f"message {event.msg} was deleted by another session"))

    def store_failed(self, code: RespCode = RespCode.SYS_TEMP, text: str | None = None) -> None:
        """The store (or a user directory) could not answer: one ``-ERR [code]`` (RFC 3206)
        and carry on.  ``text`` replaces the store's standard text for ``code``."""
        awaiting = expect(self._phase, PasswordLogin, SaslStart, SaslContinue, Retrieve)
        self._phase, reply = answers.store_failure(awaiting.resume, self._texts, code, text)
        self._out.write(reply)

    def update_finished(self, *, ok: bool, code: RespCode = RespCode.SYS_TEMP) -> None:
        """UPDATE done: all marked messages removed, or none of them (V0006)."""
        event = expect(self._phase, Update).event
        assert isinstance(event, Update)
        self._close(answers.updated(event, self._texts, ok=ok, code=code))

    def update_unknown(self) -> None:
        """UPDATE's outcome could not be learnt: say so, never a guess (close, no retry)."""
        expect(self._phase, Update)
        self._close(Err(self._texts.update_unknown, RespCode.SYS_TEMP))

    def timed_out(self, seconds: float) -> None:
        """The inactivity timer ran out: one -ERR line, then close, no UPDATE (V0003)."""
        self._close(Err(self._texts.timed_out(seconds)))

    def shutdown(self, *, by_admin: bool = False) -> None:
        """The server is stopping (or an administrator ends the session): tell the client,
        close, no UPDATE."""
        self._close(answers.shut_down(self._texts, by_admin=by_admin))

    # -- internals ------------------------------------------------------------------

    def _command_line(self, line: bytes) -> Event | None:
        command = c.parse_command(line, single_space=self.settings.single_space)
        if self._out.transcribing:
            self._out.client_line(redacted(line, command))
        if self._exchange and isinstance(command, c.Lang | c.Utf8):  # Exchange lists neither
            command = c.ParseError("unknown command")
        if isinstance(command, c.ParseError):
            self._out.verb = c.verb_of(line)
            self._bad_input(command.text)
            return None
        kind = type(command)
        verb = self._out.verb = c.VERBS[kind]
        phase = self._phase
        if isinstance(command, c.User) and command.problem and not self._exchange:
            self._bad_input(command.problem)
            return None
        if kind not in ALLOWED_IN[type(phase)]:
            self._bad_input(self._texts.not_allowed(verb, isinstance(phase, Authorization)))
            return None
        if kind is c.Capa or kind is c.Lang:  # the same in both states (RFC 6856 s3.1)
            self._out.reply(
                lang.answer(command) if isinstance(command, c.Lang) else self._capabilities()
            )
            return None
        if isinstance(phase, Transaction):
            return self._transaction(command, phase)
        assert isinstance(phase, Authorization)
        return self._authorization(command, phase)

    def _authorization(self, command: c.Command, phase: Authorization) -> Event | None:
        if isinstance(command, c.Quit):  # no UPDATE from AUTHORIZATION (s6)
            self._close(Ok(self._texts.signed_off(None)))
            return None
        if isinstance(command, c.Utf8):  # RFC 6856 s2.1; once in force, it stays
            self._utf8 = True
            self._out.write(Ok("UTF-8 mode enabled"))
            return None
        assert isinstance(command, c.User | c.Pass | c.Auth | c.Stls)  # ALLOWED[AUTHORIZATION]
        tls, utf8 = self._tls_active, self._utf8
        reply = authorization.answer(command, phase, self.settings, tls_active=tls, utf8=utf8)
        if isinstance(reply, c.ParseError):
            self._bad_input(reply.text)
        elif isinstance(reply, SaslStart):
            return self._await(reply, Sasl(reply.mechanism))
        elif isinstance(reply, PasswordLogin):
            return self._await(reply, phase)
        elif isinstance(reply, StartTls):
            self._out.write(Ok(self._texts.stls))
            # RFC 2595 s4: pipelined plaintext after STLS must not reach the TLS session.
            self._buffer.clear()
            return self._await(reply, phase)
        else:
            self._out.reply(reply)
        return None

    def _transaction(self, command: c.Command, phase: Transaction) -> Event | None:
        reply = transaction.answer(command, phase.maildrop, phase.listings)
        if isinstance(reply, Retrieve | Update):
            return self._await(reply, phase)
        self._out.reply(reply)
        return None

    def _sasl_line(self, line: bytes) -> Event:
        phase = self._phase
        assert isinstance(phase, Sasl)
        response = auth.response(line)
        if isinstance(response, Err):  # "*" or bad base64: the exchange is over
            self._phase = Authorization()
            self._out.write(response)
            return SaslCancelled()
        return self._await(SaslContinue(response), phase)

    def _capabilities(self) -> bytes:
        before_login = self.state is State.AUTHORIZATION
        return self._capa.reply(before_login=before_login, tls_active=self._tls_active)

    def _bad_input(self, text: str) -> None:
        self._out.write(Err(text))
        self._counters.bad_commands += 1
        if self._counters.bad_commands >= self.settings.max_bad_commands:
            self._close(Err(self._texts.too_many_bad_commands))

    def _await(self, event: Event, resume: Authorization | Sasl | Transaction) -> Event:
        self._phase = Awaiting(event, resume)
        return event

    def _close(self, reply: Ok | Err) -> None:
        if not isinstance(self._phase, Closed):
            self._out.write(reply)
            self._phase = Closed()
            self._buffer.clear()
