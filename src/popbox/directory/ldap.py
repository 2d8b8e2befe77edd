"""The LDAP / Active Directory backend: search with a service account, bind as the user.

Theory of operation: ``authenticate`` runs one job on the pool (``ldap_pool.py``): a
search under ``base_dn`` with the config's filter (the login's parts escaped by
``ldap_filter.py``), then a simple bind as the one entry found, with the password the
client gave.  The directory never hands out password hashes (Active Directory cannot),
so the bind *is* the password check.  A login that finds no entry binds all the same,
as a DN that does not exist, so unknown users and wrong passwords cost the same two
round trips (V0009); an empty password is never sent, since RFC 4513 section 5.1.2
makes an empty simple bind an anonymous one that succeeds.

What the answer means:
- found, bind accepted: OK, or DISABLED when ``active_directory`` is on and the
  ``userAccountControl`` ACCOUNTDISABLE bit (0x2) is set;
- found, bind refused: WRONG, unless Active Directory said the password was right but
  the account may not log in (the ``data 533``-style codes below): DISABLED;
- nothing found: UNKNOWN (the chain asks the next directory);
- no server reachable in time, or an answer that makes no sense: TEMPFAIL (with
  ``permanent`` when the entry's data is at fault: an administrator must act).
A disabled account with a wrong password is WRONG like any other: only someone who
knows the password learns that it is disabled.

Outages: the first TEMPFAIL after a good answer logs ``directory_unavailable`` once and
starts a probe that retries every ``retry_interval`` seconds, so ``healthy()`` turns
true again, with one ``directory_recovered`` line, even when no one tries to log in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from popbox.directory.base import Account, Status, Verdict
from popbox.directory.ldap_filter import render_filter
from popbox.directory.ldap_pool import LdapPool, LdapUnavailable
from popbox.directory.ldap_session import BindResult, Entry, SearchResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import structlog

    from popbox.clock import Clock
    from popbox.config.ldap import LdapSettings
    from popbox.directory.base import LoginName
    from popbox.directory.ldap_session import LdapSession

__all__ = ["ACCOUNTDISABLE", "LdapDirectory"]

ACCOUNTDISABLE = 0x2  # userAccountControl flag, [MS-ADTS] section 2.2.16
USER_ACCOUNT_CONTROL = "useraccountcontrol"

# Active Directory's bind refusals for a *right* password on an account that may not
# log in (the hex "data" code in the diagnostic message of result 49).  775 (locked
# out) is absent on purpose: AD returns it whatever the password, so it proves nothing.
_AD_REFUSALS = {
    "530": "logon not permitted at this time",
    "531": "logon not permitted from this workstation",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "password must be changed",
}
_AD_DATA = re.compile(r"\bdata ([0-9a-f]+)\b", re.IGNORECASE)
_DISABLED_REASON = "account disabled"


@dataclass(frozen=True, slots=True)
class _Found:
    search: SearchResult
    bind: BindResult | None  # None when no password was checked (lookup)


class LdapDirectory:
    """One ``[[directory]]`` of type ldap; see the module docstring."""

    def __init__(
        self,
        name: str,
        settings: LdapSettings,
        *,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.name = name
        self._settings = settings
        self._clock = clock
        self._log = log.bind(directory=name)
        self._pool = LdapPool(settings, clock)
        # The DN bound for an unknown login: under base_dn, so the server looks it up
        # where it looks up real users, and named so that no entry will ever have it.
        self._absent_dn = f"cn=popbox-no-such-user,{settings.base_dn}"
        self._attributes = tuple(
            name
            for name in (
                settings.mailbox_attribute,
                settings.quota_attribute,
                "userAccountControl" if settings.active_directory else "",
            )
            if name
        )
        self._healthy = True
        self._outage_started = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def authenticate(self, login: LoginName, password: str, peer: str) -> Verdict:
        search_filter, usable = self._filter(login)
        attributes, absent_dn = self._attributes, self._absent_dn

        async def job(session: LdapSession) -> _Found:
            found = await session.search(search_filter, attributes)
            one = usable and len(found.entries) == 1 and not found.truncated
            if one and password:
                bind = await session.check_password(found.entries[0].dn, password)
                return _Found(found, bind)
            # Same work as a real check: one bind, refused.  An empty password goes
            # nowhere near a real DN (it would be an anonymous bind, RFC 4513 5.1.2).
            await session.check_password(absent_dn, password or "-")
            if one:
                return _Found(found, BindResult(accepted=False, message=""))
            return _Found(found if usable else SearchResult((), truncated=False), None)

        found = await self._run(job)
        if isinstance(found, Verdict):
            return found
        if found.search.truncated:
            return _ambiguous(found.search)
        if found.bind is None:
            return Verdict(Status.UNKNOWN, detail=f"no entry matches {search_filter}")
        entry = found.search.entries[0]
        if not found.bind.accepted:
            return self._refused(entry, login, found.bind)
        return self._verdict(entry, login, peer)

    async def lookup(self, login: LoginName) -> Verdict:
        search_filter, usable = self._filter(login)
        attributes = self._attributes

        async def job(session: LdapSession) -> _Found:
            return _Found(await session.search(search_filter, attributes), None)

        found = await self._run(job)
        if isinstance(found, Verdict):
            return found
        if found.search.truncated:
            return _ambiguous(found.search)
        if not usable or not found.search.entries:
            return Verdict(Status.UNKNOWN, detail=f"no entry matches {search_filter}")
        return self._verdict(found.search.entries[0], login, "")

    def healthy(self) -> bool:
        return self._healthy

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._pool.close()

    # -- judging the answer ------------------------------------------------------------

    def _filter(self, login: LoginName) -> tuple[str, bool]:
        search_filter, usable = render_filter(self._settings.filter, login)
        netbios = self._settings.netbios_domain
        prefix, backslash, _ = login.raw.partition("\\")
        if netbios and backslash and prefix.casefold() != netbios.casefold():
            # OTHERDOMAIN\ann is not this domain's ann.
            nobody = dataclasses.replace(login, user="", local="", domain="")
            return render_filter(self._settings.filter, nobody)
        return search_filter, usable

    def _verdict(self, entry: Entry, login: LoginName, peer: str) -> Verdict:
        account = self._account(entry, login)
        if isinstance(account, Verdict):
            return account
        detail = f"{entry.dn} from {peer}" if peer else entry.dn
        if account.disabled_reason is not None:
            return Verdict(Status.DISABLED, account, detail=detail)
        return Verdict(Status.OK, account, detail=detail)

    def _refused(self, entry: Entry, login: LoginName, bind: BindResult) -> Verdict:
        data = _AD_DATA.search(bind.message) if self._settings.active_directory else None
        reason = _AD_REFUSALS.get(data.group(1).lower()) if data else None
        if reason is None:
            return Verdict(Status.WRONG, detail=f"bind as {entry.dn} refused")
        account = self._account(entry, login)
        if isinstance(account, Verdict):
            return account
        return Verdict(
            Status.DISABLED,
            Account(account.mailbox, account.quota_bytes, reason),
            detail=f"{entry.dn}: {bind.message}",
        )

    def _account(self, entry: Entry, login: LoginName) -> Account | Verdict:
        settings = self._settings
        mailbox = login.user
        if settings.mailbox_attribute:
            values = entry.attributes.get(settings.mailbox_attribute.lower(), ())
            if not values or not values[0].strip():
                return _garbage(entry, f"no {settings.mailbox_attribute} value")
            mailbox = values[0].strip().lower()
        quota = None
        if settings.quota_attribute:
            values = entry.attributes.get(settings.quota_attribute.lower(), ())
            if values:
                text = values[0].strip()
                if not text.isdigit():
                    return _garbage(entry, f"{settings.quota_attribute} {text!r} is not a number")
                # 0 sets no limit of its own (as in Dovecot): the server's default applies.
                quota = int(text) * settings.quota_unit or None
        disabled = None
        if settings.active_directory:
            values = entry.attributes.get(USER_ACCOUNT_CONTROL, ())
            flags = values[0].strip() if values else "0"
            if not flags.lstrip("-").isdigit():
                return _garbage(entry, f"userAccountControl {flags!r} is not a number")
            if int(flags) & ACCOUNTDISABLE:
                disabled = _DISABLED_REASON
        return Account(mailbox, quota, disabled)

    # -- outages -----------------------------------------------------------------------

    async def _run(self, job: Callable[[LdapSession], Awaitable[_Found]]) -> _Found | Verdict:
        try:
            found = await self._pool.run(job)
        except LdapUnavailable as exc:
            self._failed(str(exc))
            return Verdict(Status.TEMPFAIL, detail=f"directory unavailable: {exc}")
        self._worked()
        return found

    def _failed(self, reason: str) -> None:
        if not self._healthy:
            return
        self._healthy = False
        self._outage_started = self._clock.monotonic()
        self._log.warning("directory_unavailable", reason=reason)
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    def _worked(self) -> None:
        if self._healthy:
            return
        self._healthy = True
        down_for = round(self._clock.monotonic() - self._outage_started, 3)
        self._log.info("directory_recovered", down_for=down_for)

    async def _probe_until_up(self) -> None:
        while not self._healthy:
            await self._clock.sleep(self._settings.retry_interval)
            with contextlib.suppress(LdapUnavailable):
                await self._pool.run(_ping, force=True)
                self._worked()
        self._probe = None


async def _ping(session: LdapSession) -> None:
    await session.ping()


def _ambiguous(search: SearchResult) -> Verdict:
    dns = ", ".join(entry.dn for entry in search.entries)
    # The directory's data or the filter must change: retrying will not help.
    return Verdict(
        Status.TEMPFAIL, detail=f"the filter matches more than one entry: {dns}", permanent=True
    )


def _garbage(entry: Entry, problem: str) -> Verdict:
    return Verdict(Status.TEMPFAIL, detail=f"{entry.dn}: {problem}", permanent=True)
