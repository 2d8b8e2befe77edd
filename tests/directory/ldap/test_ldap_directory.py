"""LdapDirectory against a real slapd: search with the service account, bind as the user.

The tree (slapd.py) is Active-Directory-like: ann and carol are ordinary accounts
(carol with a quota), bob has userAccountControl's ACCOUNTDISABLE bit set, and
``st*r`` has filter metacharacters in its name.
"""

from __future__ import annotations

import pytest
import trustme

from ldap_helpers import login
from popbox.config import ConfigError
from popbox.config.ldap import parse_filter_template
from popbox.directory.base import Account, LoginName, Status
from popbox.directory.ldap_filter import render_filter
from slapd import USERS

ANN = USERS["ann"]
BOB = USERS["bob"]


async def test_search_then_bind_logs_in_with_the_mapped_mailbox(make_directory):
    directory = make_directory()

    verdict = await directory.authenticate(login("ann"), ANN.password, "192.0.2.1")

    assert verdict.status is Status.OK
    assert verdict.account == Account(mailbox="ann@example.com")
    assert ANN.dn in verdict.detail
    assert directory.healthy()


async def test_quota_attribute_is_scaled_by_its_unit(make_directory):
    directory = make_directory(quota_unit=1024)

    verdict = await directory.authenticate(login("carol"), USERS["carol"].password, "")

    assert verdict.account == Account(mailbox="carol@example.com", quota_bytes=5000 * 1024)


async def test_without_a_mailbox_attribute_the_mailbox_is_the_login_name(make_directory):
    directory = make_directory(mailbox_attribute="", filter="(uid=%n)")

    verdict = await directory.authenticate(login("ann@Example.COM"), ANN.password, "")

    assert verdict.status is Status.OK
    assert verdict.account is not None
    assert verdict.account.mailbox == "ann@example.com"


async def test_wrong_password_is_wrong_and_unknown_user_is_unknown(make_directory):
    directory = make_directory()

    assert (await directory.authenticate(login("ann"), "not it", "")).status is Status.WRONG
    assert (await directory.authenticate(login("ghost"), "not it", "")).status is Status.UNKNOWN


async def test_empty_password_is_never_an_anonymous_bind_rfc4513_s5_1_2(make_directory):
    """RFC 4513 section 5.1.2: a simple bind with a DN and an empty password is an
    unauthenticated bind, which servers accept; it must not log anyone in."""
    directory = make_directory()

    assert (await directory.authenticate(login("ann"), "", "")).status is Status.WRONG


async def test_disabled_account_with_its_password_is_disabled_with_a_reason(make_directory):
    directory = make_directory()

    verdict = await directory.authenticate(login("bob"), BOB.password, "")

    assert verdict.status is Status.DISABLED
    assert verdict.account == Account("bob@example.com", disabled_reason="account disabled")


async def test_disabled_account_with_a_wrong_password_is_just_wrong(make_directory):
    """Never reveal that an account is disabled to someone without its password."""
    directory = make_directory()

    verdict = await directory.authenticate(login("bob"), "guess", "")

    assert verdict.status is Status.WRONG
    assert verdict.account is None


async def test_account_control_is_ignored_unless_active_directory_is_on(make_directory):
    directory = make_directory(active_directory=False)

    assert (await directory.authenticate(login("bob"), BOB.password, "")).status is Status.OK


async def test_lookup_answers_without_a_password(make_directory):
    directory = make_directory()

    ann = await directory.lookup(login("ann"))
    bob = await directory.lookup(login("bob"))
    ghost = await directory.lookup(login("ghost"))

    assert (ann.status, ann.account) == (Status.OK, Account("ann@example.com"))
    assert bob.status is Status.DISABLED
    assert ghost.status is Status.UNKNOWN


AD_FILTER = "(&(objectClass=inetOrgPerson)(|(sAMAccountName=%n)(userPrincipalName=%u)))"


@pytest.mark.parametrize("raw", ["ann", "EXAMPLE\\ann", "ann@EXAMPLE.COM", "Ann@example.com"])
async def test_active_directory_login_forms_open_the_same_mailbox(make_directory, raw):
    """sAMAccountName (``DOMAIN\\user``, bare) and userPrincipalName (``user@REALM``)
    forms of one account, matched case-insensitively as AD does."""
    directory = make_directory(filter=AD_FILTER, netbios_domain="EXAMPLE")

    verdict = await directory.authenticate(login(raw), ANN.password, "")

    assert verdict.status is Status.OK, verdict
    assert verdict.account == Account("ann@example.com")


async def test_another_netbios_domain_is_not_this_directorys_user(make_directory):
    directory = make_directory(filter=AD_FILTER, netbios_domain="EXAMPLE")

    verdict = await directory.authenticate(login("OTHER\\ann"), ANN.password, "")

    assert verdict.status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("*)(uid=*", r"(uid=\2a\29\28uid=\2a)"),
        ("*", r"(uid=\2a)"),
        ("\\", r"(uid=\5c)"),
        ("ann\x00", r"(uid=ann\00)"),
        ("(uid=ann)", r"(uid=\28uid=ann\29)"),
    ],
)
def test_filter_values_are_escaped_rfc4515_s3(raw, expected):
    """RFC 4515 section 3: "the octets that represent the ASCII characters '*', '(',
    ')', '\\' and NUL are represented as a backslash followed by two hex digits"."""
    template = parse_filter_template("(uid=%u)", "filter")

    assert render_filter(template, _bare(raw)) == (expected, True)


def _bare(text: str) -> LoginName:
    """A login name taken as it is (no DOMAIN\\ or @ parsing), for injection tests."""
    return LoginName(raw=text, user=text, local=text, domain="")


INJECTIONS = ["*", "*)(uid=*", "ann)(uid=*", "*)(|(uid=*", "a*", "st*", "\\", "ann\x00", "an*"]


@pytest.mark.parametrize("raw", INJECTIONS)
async def test_filter_injection_matches_no_one(make_directory, raw):
    """A login made of filter syntax is one literal value: it finds no entry, so even
    ann's password logs no one in (``uid=*`` would have matched every user)."""
    directory = make_directory(filter="(uid=%u)")

    assert (await directory.authenticate(_bare(raw), ANN.password, "")).status is Status.UNKNOWN
    assert (await directory.lookup(_bare(raw))).status is Status.UNKNOWN


async def test_metacharacters_in_a_real_name_match_literally(make_directory):
    directory = make_directory(filter="(uid=%u)")

    verdict = await directory.authenticate(login("st*r"), USERS["st*r"].password, "")

    assert verdict.status is Status.OK
    assert verdict.account == Account("star@example.com")


async def test_filter_matching_several_entries_is_a_temporary_failure(make_directory):
    """An ambiguous filter is the directory's misconfiguration: no one is logged in as
    whichever entry came first."""
    directory = make_directory(filter="(|(uid=%n)(uid=carol))")

    verdict = await directory.authenticate(login("ann"), ANN.password, "")

    assert verdict.status is Status.TEMPFAIL
    assert verdict.permanent
    assert "more than one entry" in verdict.detail


async def test_starttls_on_the_plain_port(make_directory, slapd):
    directory = make_directory(uris=[slapd.uri], starttls=True)

    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK


async def test_plaintext_is_refused_without_the_explicit_key(make_directory, slapd):
    with pytest.raises(ConfigError, match=r"corp\.uris: ldap://.* unencrypted"):
        make_directory(uris=[slapd.uri])

    directory = make_directory(uris=[slapd.uri], allow_plaintext=True)
    assert (await directory.authenticate(login("ann"), ANN.password, "")).status is Status.OK


async def test_a_certificate_from_another_ca_is_refused(make_directory, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    directory = make_directory(ca_file=str(other))

    verdict = await directory.authenticate(login("ann"), ANN.password, "")

    assert verdict.status is Status.TEMPFAIL
    assert "CERTIFICATE_VERIFY_FAILED" in verdict.detail
    assert not directory.healthy()


async def test_wrong_service_password_is_a_temporary_failure(make_directory):
    directory = make_directory(bind_password="not the service password")

    verdict = await directory.authenticate(login("ann"), ANN.password, "")

    assert verdict.status is Status.TEMPFAIL
    assert "service account" in verdict.detail


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"mailbox_attribute": "description"}, "no description value"),
        ({"quota_attribute": "sn"}, "sn 'ann' is not a number"),
    ],
)
async def test_unusable_attributes_are_a_permanent_failure(make_directory, keys, problem):
    """A mailbox or quota attribute the entry lacks or cannot hold is the directory's
    data at fault: [SYS/PERM] rather than a login with made-up values."""
    directory = make_directory(**keys)

    verdict = await directory.authenticate(login("ann"), ANN.password, "")

    assert verdict.status is Status.TEMPFAIL
    assert verdict.permanent
    assert problem in verdict.detail
