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
from popbox.auth.plain import step_of
from popbox.directory.base import Status
from popbox.directory.mailboxes import ensure_mailbox
from popbox.protocol.connection import PasswordLogin, SaslCancelled, SaslContinue, SaslStart
from popbox.protocol.mechanisms import LOGIN, PLAIN
from popbox.protocol.replies import Err, RespCode
from popbox.server.store_errors import response_code
from popbox.store.base import MaildropLocked, StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import structlog

    from popbox.auth.base import Step
    from popbox.directory.base import Account
    from popbox.protocol.connection import Pop3Connection
    from popbox.server.context import ServerContext
    from popbox.server.observe import SessionObserver
    from popbox.store.base import MaildropHandle

__all__ = ["AUTH_FAILED", "LoginEvent", "LoginFlow", "disabled_reply"]

AUTH_FAILED = Err("authentication failed", RespCode.AUTH)
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
        self.log: structlog.typing.FilteringBoundLogger = server.log
        """The session's logger; bound with ``user=`` once a login succeeds."""
        self.maildrop: MaildropHandle | None = None
        """The logged-in user's maildrop handle, from the login until ``release_lock``."""

    def attach(self, peer: str, peer_ip: str, log: structlog.typing.FilteringBoundLogger) -> None:
        """Learn the client's address and the session's logger once the connection is made."""
        self._peer, self._peer_ip, self.log = peer, peer_ip, log

    async def answer(self, event: LoginEvent) -> None:
        match event:
            case PasswordLogin(user, password, valid_name):
                await self._password_login(user, password, valid_name=valid_name)
            case SaslStart(name, initial):
                if self._locked_out(None, name):
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
        if self._locked_out(user, "USER"):
            return  # refused before hashing: a lockout must not cost CPU
        # V0009: an unknown user is verified against a dummy hash, so PASS costs the same;
        # a right password also upgrades a hash made with older parameters.  So is a
        # name USER could not accept (V0008, Exchange profiles): looked up all the same,
        # so that it costs what an unknown name costs.
        answer = await self._server.directories.authenticate(
            user, password, self._peer_ip, known=valid_name
        )
        await self._finish(step_of(answer), "USER")

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
        await self._finish(step, name)

    async def _finish(self, step: Success | Failure, mechanism: str) -> None:
        """Log in, or refuse: [SYS/TEMP] for a directory that cannot answer, the reason
        for a disabled account with the right password, else the one failure answer."""
        match step:
            case Success(user, account):
                await self._login(user, mechanism, account)
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
                if self._locked_out(user, mechanism):
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

    async def _login(self, user: str, mechanism: str, account: Account | None = None) -> None:
        store, pop3 = self._server.store, self._server.config.pop3
        if self._locked_out(user, mechanism):
            return  # even the right password is refused during a lockout
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
        self.log = self.log.bind(user=user)
        self.log.info("login", mechanism=mechanism, messages=len(maildrop.messages))
        self._observe.logged_in(user, mechanism, self.log)
        self._server.guard.succeeded(user)
        self._conn.login_succeeded(user, maildrop.messages)

    async def _fail_login(self, user: str | None, mechanism: str, reason: str) -> None:
        guard = self._server.guard
        locked = guard.locked_for(self._peer_ip, user)
        delay = guard.failed(self._peer_ip, user)  # grows with recent failures
        self.log.info("login_failed", user=user, mechanism=mechanism, reason=reason)
        self._observe.login_result(mechanism, "failure")
        await self._server.clock.sleep(delay)
        self._conn.login_failed(_lockout_reply(locked) if locked > 0 else AUTH_FAILED)

    def _locked_out(self, user: str | None, mechanism: str) -> bool:
        """Refuse the login with [LOGIN-DELAY] if this IP or user is locked out."""
        seconds = self._server.guard.locked_for(self._peer_ip, user)
        if seconds <= 0:
            return False
        self.log.info("login_locked_out", user=user, mechanism=mechanism, seconds=round(seconds))
        self._observe.login_result(mechanism, "lockout")
        self._conn.login_failed(_lockout_reply(seconds))
        return True

    async def _renew_lock(self, user: str) -> None:
        lease = self._server.config.pop3.lock_lease
        with contextlib.suppress(StoreError):
            while True:
                await self._server.clock.sleep(lease / 3)
                await self._server.store.acquire_lock(user, self._session_id, lease)


def disabled_reply(reason: str) -> Err:
    """The answer to the right password of a disabled account.

    RFC 3206 s4: [SYS/PERM] says the failure is not the user's credentials ([AUTH]) and
    will not go away until an administrator acts, so a client does not ask for the
    password again.  (Dovecot answers such a login with [AUTH] and the reason, which a
    client takes for a wrong password.)
    """
    text = f"account disabled: {reason}" if reason else "account disabled"
    return Err(text, RespCode.SYS_PERM)


def _lockout_reply(seconds: float) -> Err:
    # RFC 2449 s8.1.2 LOGIN-DELAY: the client should not retry before the delay is over.
    text = f"too many failed logins, try again in {math.ceil(seconds)} seconds"
    return Err(text, RespCode.LOGIN_DELAY)
