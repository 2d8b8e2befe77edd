"""The pre-authentication half of a POP3 session: USER/PASS, SASL, lockouts, the maildrop lock.

Theory of operation: the session (``server/session.py``) hands every login event it pulls
from the sans-IO connection to a ``LoginFlow``, which answers it on that connection
(``login_succeeded``, ``login_failed``, ``sasl_challenge``, ``store_failed``).  Each
attempt first asks the brute-force guard: a locked-out IP or user is refused with
``[LOGIN-DELAY]`` before any hashing or SASL exchange.  A verified user then passes the
per-user session limit, takes the maildrop lock when ``pop3.lock_mailbox`` is set (renewed
by a task at a third of the lease, so a crashed node's lock expires), and opens its
``MaildropHandle`` (the snapshot, the body reads, UPDATE's commit: ``maildrop``).  Lock
and handle outlive the login: the session gives both up through ``release_lock`` at
UPDATE, before the ``+OK`` (RFC 1939 section 6), or when the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, TypeAlias

from popbox.auth.base import AuthContext, Challenge, Failure, Mechanism, Success
from popbox.auth.guard import GuardUnavailable
from popbox.auth.plain import step_of
from popbox.directory.base import Status
from popbox.directory.mailboxes import ensure_mailbox
from popbox.protocol.connection import PasswordLogin, SaslCancelled, SaslContinue, SaslStart
from popbox.protocol.mechanisms import LOGIN, PLAIN
from popbox.protocol.replies import Err, RespCode
from popbox.server.store_errors import response_code
from popbox.store.base import MaildropLocked, StoreError, StoreTemporaryError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import structlog

    from popbox.auth.base import Step
    from popbox.directory.base import Account
    from popbox.protocol.connection import Pop3Connection
    from popbox.server.context import ServerContext
    from popbox.server.observe import SessionObserver
    from popbox.store.base import MaildropHandle

__all__ = [
    "AUTH_FAILED",
    "GUARD_UNAVAILABLE",
    "LOCK_RENEW_RETRY",
    "LoginEvent",
    "LoginFlow",
    "disabled_reply",
]

AUTH_FAILED = Err("authentication failed", RespCode.AUTH)
# [auth] shared_state_unavailable = "closed", and the shared scores cannot be reached.
GUARD_UNAVAILABLE = Err("login checks are unavailable, try again later", RespCode.SYS_TEMP)
LOCK_RENEW_RETRY = 5.0  # seconds between renewals of a maildrop lock while the store is away
DISABLED_REASON_MAX = 200  # characters of a disabled account's reason in the -ERR line
# The mechanisms that send the password itself, which every directory can check.
PASSWORD_MECHANISMS = frozenset({"USER", PLAIN, LOGIN})

LoginEvent: TypeAlias = PasswordLogin | SaslStart | SaslContinue | SaslCancelled


class LoginFlow:
    """Answers one session's login events and holds its maildrop lock."""

    def __init__(
        self,
        server: ServerContext,
        conn: Pop3Connection,
        observe: SessionObserver,
        session_id: str,
    ) -> None:
        self._server = server
        self._conn = conn
        self._observe = observe
        self._session_id = session_id
        self._mechanism: Mechanism | None = None
        self._lock_renewer: asyncio.Task[None] | None = None
        self._peer = "-"
        self._peer_ip = "-"  # brute-force accounting is per source IP, not per port
        self._user_scored = False  # the guard said the user has failures to forgive
        self.log: structlog.typing.FilteringBoundLogger = server.log
        """The session's logger; bound with ``user=`` once a login succeeds."""
        self.maildrop: MaildropHandle | None = None
        """The logged-in user's maildrop handle, from the login until ``release_lock``."""
        self.mechanism: str | None = None
        """How the user logged in (USER or the SASL mechanism), once logged in."""

    def attach(self, peer: str, peer_ip: str, log: structlog.typing.FilteringBoundLogger) -> None:
        """Learn the client's address and the session's logger once the connection is made."""
        self._peer, self._peer_ip, self.log = peer, peer_ip, log

    async def answer(self, event: LoginEvent) -> None:
        match event:
            case PasswordLogin(user, password, valid_name):
                await self._password_login(user, password, valid_name=valid_name)
            case SaslStart(name, initial):
                if await self._locked_out(None, name):
                    return  # a locked-out IP gets no exchange, and costs no hashing
                context = AuthContext(
                    self._server.store,
                    self._peer,
                    self._conn.tls_active,
                    directories=self._server.directories,
                    peer_ip=self._peer_ip,
                )
                self._mechanism = self._server.registry.create(name, context)
                await self._sasl_step(self._mechanism.start(initial), name)
            case SaslContinue(response):
                assert self._mechanism is not None
                await self._sasl_step(self._mechanism.step(response), "")
            case SaslCancelled():
                self._mechanism = None

    async def release_lock(self) -> None:
        """Give up the maildrop: its handle, and its lock if this session holds one.

        Store errors are ignored: the lease of a lock left behind runs out.
        """
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            await maildrop.close()
        renewer, self._lock_renewer = self._lock_renewer, None
        if renewer is None:
            return
        renewer.cancel()
        user = self._conn.user
        if user is not None:
            with contextlib.suppress(StoreError):
                await self._server.store.release_lock(user, self._session_id)

    async def _password_login(self, user: str, password: str, *, valid_name: bool) -> None:
        if await self._locked_out(user, "USER"):
            return  # refused before hashing: a lockout must not cost CPU
        # V0009: an unknown user is verified against a dummy hash, so PASS costs the same;
        # a right password also upgrades a hash made with older parameters.  So is a
        # name USER could not accept (V0008, Exchange profiles): looked up all the same,
        # so that it costs what an unknown name costs.
        answer = await self._server.directories.authenticate(
            user, password, self._peer_ip, known=valid_name
        )
        await self._finish(step_of(answer), "USER", checked=True)

    async def _sasl_step(self, pending: Awaitable[Step], mechanism: str) -> None:
        try:
            step = await pending
        except StoreError as exc:
            self.log.warning("auth_backend_unavailable", mechanism=mechanism or "?")
            self._mechanism = None
            self._conn.store_failed(response_code(exc))
            return
        name = mechanism or (self._mechanism.name if self._mechanism else "?")
        if isinstance(step, Challenge):
            self._conn.sasl_challenge(step.data)
            return
        self._mechanism = None
        await self._finish(step, name, checked=False)

    async def _finish(self, step: Success | Failure, mechanism: str, *, checked: bool) -> None:
        """Log in, or refuse: [SYS/TEMP] for a directory that cannot answer, the reason
        for a disabled account with the right password, else the one failure answer.

        ``checked``: the guard was asked about this user before the password was.
        """
        match step:
            case Success(user, account):
                await self._login(user, mechanism, account, checked=checked)
            case Failure(reason, user, temporary=True, directory=directory, permanent=permanent):
                self._observe.login_result(mechanism, "directory_unavailable")
                self.log.warning("login_directory_unavailable", user=user, reason=reason)
                if permanent:  # the mail store refuses: [SYS/PERM], as for every store error
                    self._conn.store_failed(RespCode.SYS_PERM)
                elif directory:
                    text = f"the user directory {directory} is not available, try again later"
                    self._conn.store_failed(RespCode.SYS_TEMP, text)
                else:
                    self._conn.store_failed(RespCode.SYS_TEMP)
            case Failure(reason, user, disabled_reason=str(why)):
                if not checked and await self._locked_out(user, mechanism):
                    return  # a lockout answers before anything about the account
                self._observe.login_result(mechanism, "disabled")
                self.log.info("login_refused_disabled", user=user, mechanism=mechanism)
                self._conn.login_failed(disabled_reply(why))
            case Failure(reason, user):
                await self._note_directory_user(user, mechanism)
                await self._fail_login(user, mechanism, reason)

    async def _note_directory_user(self, user: str | None, mechanism: str) -> None:
        """Say why SCRAM, NTLM and the like cannot log in a user of another directory.

        Those mechanisms prove a secret the mail store keeps (the SCRAM keys, the NT
        hash), which a passwd-file or an LDAP server cannot give.  Such a login fails,
        never falls back to a weaker check, and the log says what would work.
        """
        directories = self._server.directories
        if user is None or mechanism in PASSWORD_MECHANISMS or directories.internal_only():
            return
        answer = await directories.lookup(user)
        if answer.verdict.status is Status.OK and not answer.stored:
            self.log.warning(
                "login_mechanism_needs_stored_secret",
                user=user,
                mechanism=mechanism,
                directory=answer.directory,
                hint="this directory checks passwords only: use USER/PASS, PLAIN or LOGIN",
            )

    async def _login(
        self, user: str, mechanism: str, account: Account | None, *, checked: bool
    ) -> None:
        store, pop3 = self._server.store, self._server.config.pop3
        if not checked and await self._locked_out(user, mechanism):
            return  # even the right password is refused during a lockout
        if mechanism not in PASSWORD_MECHANISMS and await self._disabled(user, mechanism):
            return  # the password mechanisms had the directory chain say so already
        refused = await self._observe.admit_login(user, mechanism)
        if refused is not None:  # server.max_sessions_per_user on this node
            self.log.warning("login_refused_limit", user=user, limit=refused.limit)
            self._conn.login_failed(refused.reply)
            return
        try:
            if pop3.lock_mailbox:
                await store.acquire_lock(user, self._session_id, pop3.lock_lease)
                self._lock_renewer = asyncio.get_running_loop().create_task(self._renew_lock(user))
            if account is not None:  # a directory's user: the first login makes the mailbox
                await ensure_mailbox(store, account)
            maildrop = await store.open_maildrop(user)
        except MaildropLocked as exc:
            self.log.info("login_refused_locked", user=user, mechanism=mechanism)
            self._observe.login_result(mechanism, "locked")
            self._conn.login_failed(
                Err("maildrop is locked by another session, try again later", response_code(exc))
            )
            return
        except StoreError as exc:
            self.log.warning("login_store_error", user=user)
            self._observe.login_result(mechanism, "store_error")
            self._conn.store_failed(response_code(exc))
            return
        self.maildrop = maildrop
        self.mechanism = mechanism
        self.log = self.log.bind(user=user)
        self.log.info("login", mechanism=mechanism, messages=len(maildrop.messages))
        self._observe.logged_in(user, mechanism, self.log)
        if self._user_scored:
            with contextlib.suppress(GuardUnavailable):  # counted on: forgiven later
                await self._server.guard.succeeded(user)
        self._conn.login_succeeded(user, maildrop.messages)

    async def _disabled(self, user: str, mechanism: str) -> bool:
        """Refuse a disabled account that proved a secret the mail store keeps (SCRAM,
        NTLM, GSSAPI, XOAUTH2): those mechanisms do not ask the directory chain."""
        try:
            record = await self._server.store.get_user(user)
        except StoreError as exc:
            self.log.warning("login_store_error", user=user)
            self._observe.login_result(mechanism, "store_error")
            self._conn.store_failed(response_code(exc))
            return True
        if record is None or record.disabled_reason is None:
            return False
        self.log.info("login_refused_disabled", user=user, mechanism=mechanism)
        self._observe.login_result(mechanism, "disabled")
        self._conn.login_failed(disabled_reply(record.disabled_reason))
        return True

    async def _fail_login(self, user: str | None, mechanism: str, reason: str) -> None:
        self.log.info("login_failed", user=user, mechanism=mechanism, reason=reason)
        self._observe.login_result(mechanism, "failure")
        try:
            failed = await self._server.guard.failed(self._peer_ip, user)
        except GuardUnavailable:
            self.log.warning("login_guard_unavailable", user=user, mechanism=mechanism)
            await self._server.clock.sleep(self._server.config.pop3.auth_failure_delay)
            self._conn.login_failed(GUARD_UNAVAILABLE)
            return
        await self._server.clock.sleep(failed.delay)  # grows with recent failures
        locked = failed.locked_for
        self._conn.login_failed(_lockout_reply(locked) if locked > 0 else AUTH_FAILED)

    async def _locked_out(self, user: str | None, mechanism: str) -> bool:
        """Refuse the login with [LOGIN-DELAY] if this IP or user is locked out.

        Also refused, with [SYS/TEMP], when the shared scores cannot be read and
        ``[auth] shared_state_unavailable = "closed"``.
        """
        try:
            standing = await self._server.guard.check(self._peer_ip, user)
        except GuardUnavailable:
            self.log.warning("login_guard_unavailable", user=user, mechanism=mechanism)
            self._observe.login_result(mechanism, "store_error")
            self._conn.login_failed(GUARD_UNAVAILABLE)
            return True
        if user is not None:
            self._user_scored = standing.user_scored
        seconds = standing.locked_for
        if seconds <= 0:
            return False
        self.log.info("login_locked_out", user=user, mechanism=mechanism, seconds=round(seconds))
        self._observe.login_result(mechanism, "lockout")
        self._conn.login_failed(_lockout_reply(seconds))
        return True

    async def _renew_lock(self, user: str) -> None:
        lease = self._server.config.pop3.lock_lease
        interval = lease / 3
        while True:
            await self._server.clock.sleep(interval)
            try:
                await self._server.store.acquire_lock(user, self._session_id, lease)
            except StoreTemporaryError:
                # The database is away for a moment (a restart, a failover): the lease
                # runs on meanwhile, so try again well before it runs out.
                interval = min(lease / 3, LOCK_RENEW_RETRY)
                continue
            except StoreError:
                return  # taken over after the lease ran out, or the user is gone
            interval = lease / 3


def disabled_reply(reason: str) -> Err:
    """The answer to the right password of a disabled account.

    RFC 3206 s4: [SYS/PERM] says the failure is not the user's credentials ([AUTH]) and
    will not go away until an administrator acts, so a client does not ask for the
    password again.  (Dovecot answers such a login with [AUTH] and the reason, which a
    client takes for a wrong password.)
    """
    # The reason comes from an administrator, a passwd-file or LDAP: printable ASCII
    # only, so that no CR LF (or UTF-8 outside UTF8 mode) reaches the status line.
    shown = "".join(c for c in reason if " " <= c <= "~")[:DISABLED_REASON_MAX].strip()
    text = f"account disabled: {shown}" if shown else "account disabled"
    return Err(text, RespCode.SYS_PERM)


def _lockout_reply(seconds: float) -> Err:
    # RFC 2449 s8.1.2 LOGIN-DELAY: the client should not retry before the delay is over.
    text = f"too many failed logins, try again in {math.ceil(seconds)} seconds"
    return Err(text, RespCode.LOGIN_DELAY)
