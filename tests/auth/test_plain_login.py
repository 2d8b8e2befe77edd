"""SASL PLAIN (RFC 4616) and LOGIN mechanism objects, without a server."""

from __future__ import annotations

import pytest

from mechs import FAST, context_with, run
from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.login import LoginMechanism
from popbox.auth.passwords import PasswordVerifier
from popbox.auth.plain import PasswordSettings, PlainMechanism

USERS = {"alice": "alice secret", "bob": "bob-password", "root": "root pw"}
SETTINGS = PasswordSettings(verifier=PasswordVerifier(FAST), admins=frozenset({"root"}))


@pytest.fixture(scope="module")
def context():
    return context_with(USERS)


def plain(context, message: bytes | None, then: bytes | None = None):
    mech = PlainMechanism(context, SETTINGS)
    step = run(mech.start(message))
    if then is not None:
        assert step == Challenge(b"")
        step = run(mech.step(then))
    return step


def test_plain_initial_response_logs_in_rfc4616_s2(context):
    """RFC 4616 s2: "message = [authzid] UTF8NUL authcid UTF8NUL passwd"."""
    assert plain(context, b"\0alice\0alice secret") == Success("alice")


def test_plain_without_initial_response_sends_empty_challenge_rfc4616_s2(context):
    """RFC 4616 s2: "The mechanism consists of a single message ... from the client"; with
    no initial response the server sends an empty challenge first (RFC 5034 s4)."""
    assert plain(context, None, then=b"\0bob\0bob-password") == Success("bob")


def test_plain_authzid_equal_to_authcid_is_accepted_rfc4616_s2(context):
    """RFC 4616 s2: an authzid equal to the authcid asks for nothing more."""
    assert plain(context, b"alice\0alice\0alice secret") == Success("alice")


def test_plain_wrong_password_and_unknown_user_fail_alike_rfc4616_s2(context):
    """V0009: unknown user and wrong password give the same kind of answer."""
    wrong = plain(context, b"\0alice\0nope")
    unknown = plain(context, b"\0mallory\0nope")
    assert isinstance(wrong, Failure)
    assert isinstance(unknown, Failure)
    assert wrong.reason == unknown.reason
    assert (wrong.user, unknown.user) == ("alice", "mallory")


def test_plain_other_authzid_refused_for_non_admin_rfc4616_s2(context):
    """RFC 4616 s2: "the server ... verifies that the authcid is allowed to act as authzid"."""
    step = plain(context, b"bob\0alice\0alice secret")
    assert isinstance(step, Failure)
    assert step.user == "alice"


def test_plain_admin_may_act_as_another_user_rfc4616_s2(context):
    """RFC 4616 s2: an administrator listed in auth.admins may open another mailbox."""
    assert plain(context, b"alice\0root\0root pw") == Success("alice")


def test_plain_admin_acting_as_missing_user_is_refused(context):
    assert isinstance(plain(context, b"nobody\0root\0root pw"), Failure)


def test_plain_admin_with_wrong_password_is_refused(context):
    assert isinstance(plain(context, b"alice\0root\0wrong"), Failure)


@pytest.mark.parametrize(
    "message",
    [
        b"alice\0alice secret",  # one NUL
        b"\0alice\0alice secret\0",  # three NULs
        b"\0\0alice secret",  # empty authcid
        b"\0alice\0",  # empty password
        b"\0al\x01ice\0alice secret",  # control character in the name
        b"\0alice\0alice\x7fsecret",  # DEL in the password
        b"\0\xff\xfe\0alice secret",  # not UTF-8
        b"\0" + b"a" * 256 + b"\0x",  # authcid over 255 octets
    ],
)
def test_plain_malformed_message_fails_rfc4616_s2(context, message):
    """RFC 4616 s2: NUL-separated UTF-8 fields; prohibited characters are refused."""
    assert isinstance(plain(context, message), Failure)


def test_plain_second_message_fails(context):
    mech = PlainMechanism(context, SETTINGS)
    assert isinstance(run(mech.start(b"\0alice\0nope")), Failure)
    assert isinstance(run(mech.step(b"\0alice\0alice secret")), Failure)


def test_login_asks_username_then_password_as_outlook_expects(context):
    """LOGIN: the challenges are the texts "Username:" and "Password:"."""
    mech = LoginMechanism(context, SETTINGS)
    assert run(mech.start(None)) == Challenge(b"Username:")
    assert run(mech.step(b"alice")) == Challenge(b"Password:")
    assert run(mech.step(b"alice secret")) == Success("alice")


def test_login_initial_response_is_the_user_name(context):
    mech = LoginMechanism(context, SETTINGS)
    assert run(mech.start(b"bob")) == Challenge(b"Password:")
    assert run(mech.step(b"bob-password")) == Success("bob")


def test_login_empty_initial_response_asks_for_the_name(context):
    assert run(LoginMechanism(context, SETTINGS).start(b"")) == Challenge(b"Username:")


@pytest.mark.parametrize(
    ("user", "password"), [(b"alice", b"wrong"), (b"mallory", b"x"), (b"alice", b"")]
)
def test_login_wrong_credentials_fail(context, user, password):
    mech = LoginMechanism(context, SETTINGS)
    run(mech.start(None))
    run(mech.step(user))
    step = run(mech.step(password))
    assert isinstance(step, Failure)
    assert step.user == user.decode()


def test_login_bad_user_name_fails_at_once(context):
    mech = LoginMechanism(context, SETTINGS)
    run(mech.start(None))
    assert isinstance(run(mech.step(b"a\0b")), Failure)
