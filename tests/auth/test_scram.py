"""SCRAM-SHA-256 (RFC 5802, RFC 7677): verifiers, the exchange, and its failure paths."""

from __future__ import annotations

import base64

import pytest

from mechs import FAST, ScramClient, context_with, run
from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.passwords import (
    ARGON2ID,
    SCRAM_SHA256,
    parse_scram_verifier,
    scram_verifier,
    verifiers_for,
)
from popbox.auth.scram import ScramMechanism, ScramSettings, load_or_create_secret
from popbox.config import AuthConfig
from popbox.protocol.saslprep import SaslprepError, saslprep
from popbox.store.memory import MemoryStore

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_VERIFIER = (
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)
SECRET = b"k" * 32


def settings(**kwargs) -> ScramSettings:
    return ScramSettings(SECRET, AuthConfig().scram_iterations, **kwargs)


@pytest.fixture(scope="module")
def context():
    return context_with({"user": "pencil", "root": "root pw"})


def login(context, client: ScramClient, mech_settings: ScramSettings | None = None):
    mech = ScramMechanism(context, mech_settings or settings())
    first = run(mech.start(client.first()))
    assert isinstance(first, Challenge)
    return mech, first, run(mech.step(client.final(first.data)))


def test_verifier_matches_rfc7677_example_rfc5803_s3():
    """RFC 7677 s3 example: user "user", password "pencil", this salt, 4096 iterations;
    stored in the RFC 5803 format."""
    assert scram_verifier("pencil", 4096, RFC7677_SALT) == RFC7677_VERIFIER
    parsed = parse_scram_verifier(RFC7677_VERIFIER)
    assert parsed is not None
    assert str(parsed) == RFC7677_VERIFIER


@pytest.mark.parametrize(
    "text",
    [
        "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d:wfPL",
        "SCRAM-SHA-256$x:W22Z$a:b",
        "SCRAM-SHA-256$4096:!!$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:AA==",
        "SCRAM-SHA-256$4096:$AAAA:AAAA",
        "",
    ],
)
def test_malformed_stored_verifier_is_not_parsed(text):
    assert parse_scram_verifier(text) is None


def test_rfc7677_example_exchange_byte_for_byte_rfc7677_s3():
    """RFC 7677 s3: the whole example exchange, with the example's server nonce."""
    store = MemoryStore()
    run(store.add_user("user", {SCRAM_SHA256: RFC7677_VERIFIER}))
    context = context_with({})
    context = type(context)(store=store, peer=context.peer, tls_active=True)
    nonce = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    mech = ScramMechanism(context, settings(nonce=lambda: nonce))
    first = run(mech.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
    assert first == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = run(
        mech.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        )
    )
    assert final == Challenge(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert run(mech.step(b"")) == Success("user")


def test_server_final_is_a_challenge_then_empty_response_succeeds_rfc5034_s4(context):
    """RFC 5034 s4: additional data with success is sent as a challenge; the client
    answers with an empty response."""
    client = ScramClient("user", "pencil")
    mech, _, final = login(context, client)
    assert final == Challenge(b"v=" + base64.b64encode(client.server_signature))
    assert run(mech.step(b"")) == Success("user")


def test_data_after_server_final_fails(context):
    mech, _, _ = login(context, ScramClient("user", "pencil"))
    assert isinstance(run(mech.step(b"x")), Failure)


def test_no_initial_response_gets_empty_challenge_first_rfc5034_s4(context):
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    assert run(mech.start(None)) == Challenge(b"")
    first = run(mech.step(client.first()))
    assert isinstance(first, Challenge)
    assert isinstance(run(mech.step(client.final(first.data))), Challenge)


def test_wrong_password_fails_rfc5802_s5(context):
    """RFC 5802 s5: the server verifies the proof; a wrong password cannot produce it."""
    _, _, final = login(context, ScramClient("user", "wrong"))
    assert isinstance(final, Failure)
    assert final.user == "user"


def test_unknown_user_gets_stable_fake_salt_and_fails(context):
    """RFC 5802 s9: the server should not reveal whether a user exists: an unknown user
    gets a salt that looks real, the same on every attempt, and the same iterations."""
    firsts = []
    for _ in range(2):
        _, first, final = login(context, ScramClient("mallory", "pencil"))
        assert isinstance(final, Failure)
        firsts.append(dict(p.split("=", 1) for p in first.data.decode().split(",")))
    real = dict(
        p.split("=", 1)
        for p in login(context, ScramClient("user", "x"))[1].data.decode().split(",")
    )
    assert firsts[0]["s"] == firsts[1]["s"]
    assert len(base64.b64decode(firsts[0]["s"])) == len(base64.b64decode(real["s"]))
    assert firsts[0]["i"] == real["i"] == str(AuthConfig().scram_iterations)
    other = login(context, ScramClient("eve", "pencil"))[1]
    assert dict(p.split("=", 1) for p in other.data.decode().split(","))["s"] != firsts[0]["s"]


def test_y_flag_is_accepted_when_plus_is_not_offered_rfc5802_s6(context):
    """RFC 5802 s6: "y" means the client supports channel binding but thinks the server
    does not; the server does not advertise -PLUS, so it proceeds."""
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    first = run(mech.start(client.first("y,,")))
    assert isinstance(run(mech.step(client.final(first.data))), Challenge)


def test_channel_binding_request_is_refused_rfc5802_s6(context):
    """RFC 5802 s6: "p=" asks for channel binding, which this server does not offer."""
    mech = ScramMechanism(context, settings())
    assert isinstance(run(mech.start(b"p=tls-server-end-point,,n=user,r=abc")), Failure)


def test_channel_binding_data_must_match_gs2_header_rfc5802_s7(context):
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    first = run(mech.start(client.first("y,,")))
    assert isinstance(run(mech.step(client.final(first.data, channel="biws"))), Failure)


def test_nonce_must_be_the_combined_nonce_rfc5802_s5_1(context):
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    first = run(mech.start(client.first()))
    final = client.final(first.data).replace(b"r=fyko", b"r=FYKO")
    assert isinstance(run(mech.step(final)), Failure)


@pytest.mark.parametrize(
    "message",
    [
        b"n,,m=ext,n=user,r=abc",  # mandatory extension
        b"x,,n=user,r=abc",  # bad gs2 flag
        b"n,,r=abc,n=user",  # attributes out of order
        b"n,,n=,r=abc",  # empty name
        b"n,,n=us=3Xer,r=abc",  # bad saslname escape
        b"n,,n=user,r=",  # empty nonce
        b"n,,n=user,r=a,b",  # nonce holds a comma (split into an extension: fine) ...
        b"n,,n=user",  # no nonce
        b"n,b=x,n=user,r=abc",  # authzid attribute that is not a=
        b"n",  # no gs2 header at all
    ],
)
def test_malformed_client_first_fails_rfc5802_s7(context, message):
    step = run(ScramMechanism(context, settings()).start(message))
    if message == b"n,,n=user,r=a,b":
        assert isinstance(step, Challenge)  # "b" is an extension attribute after r=
    else:
        assert isinstance(step, Failure)


@pytest.mark.parametrize(
    "final",
    [b"c=biws", b"c=biws,r=x,p=!!!", b"c=biws,p=AAAA", b"r=x,c=biws,p=AAAA"],
)
def test_malformed_client_final_fails_rfc5802_s7(context, final):
    mech = ScramMechanism(context, settings())
    run(mech.start(ScramClient("user", "pencil").first()))
    assert isinstance(run(mech.step(final)), Failure)


def test_proof_of_wrong_length_fails(context):
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    first = run(mech.start(client.first()))
    good = client.final(first.data)
    assert isinstance(run(mech.step(good[: good.index(b",p=")] + b",p=AAAA")), Failure)


def test_saslname_escapes_are_decoded_rfc5802_s5_1():
    """RFC 5802 s5.1: "=2C" and "=3D" stand for "," and "=" in user names."""
    context = context_with({"a,b=c": "pw"})
    client = ScramClient("a=2Cb=3Dc", "pw")
    _, _, final = login(context, client)
    assert isinstance(final, Challenge)


def test_admin_may_name_another_mailbox_in_authzid(context):
    client = ScramClient("root", "root pw")
    mech = ScramMechanism(context, settings(admins=frozenset({"root"})))
    first = run(mech.start(client.first("n,a=user,")))
    assert isinstance(run(mech.step(client.final(first.data))), Challenge)
    assert run(mech.step(b"")) == Success("user")


def test_non_admin_authzid_for_another_user_fails(context):
    mech = ScramMechanism(context, settings())
    assert isinstance(run(mech.start(b"n,a=root,n=user,r=abc")), Failure)


def test_admin_naming_missing_mailbox_fails_after_the_proof(context):
    client = ScramClient("root", "root pw")
    mech = ScramMechanism(context, settings(admins=frozenset({"root"})))
    first = run(mech.start(client.first("n,a=nobody,")))
    assert isinstance(run(mech.step(client.final(first.data))), Failure)


def test_verifiers_for_stores_scram_only_when_offered():
    """The PBKDF2 verifier is weaker than argon2id: made only if SCRAM is offered."""
    # The password has characters base64 never produces, so finding it is never chance.
    with_scram = verifiers_for("p w!", FAST)
    assert set(with_scram) == {ARGON2ID, SCRAM_SHA256}
    assert "p w!" not in with_scram[SCRAM_SHA256]
    parsed = parse_scram_verifier(with_scram[SCRAM_SHA256])
    assert parsed is not None
    assert parsed.iterations == AuthConfig().scram_iterations
    without = verifiers_for("pw", FAST, auth=AuthConfig(mechanisms=("PLAIN",)))
    assert set(without) == {ARGON2ID}


def test_password_sasl_prep_prohibits_gets_no_scram_verifier():
    assert set(verifiers_for("a\x07b", FAST)) == {ARGON2ID}


def test_saslprep_maps_and_prohibits_rfc4013_s2():
    """RFC 4013 s2: non-ASCII spaces map to SPACE, soft hyphen to nothing, NFKC, and
    control characters are prohibited."""
    assert saslprep("I\u00adX") == "IX"
    assert saslprep("user") == "user"
    assert saslprep("a\u00a0b") == "a b"
    assert saslprep("\u2168") == "IX"
    with pytest.raises(SaslprepError):
        saslprep("\u0007")
    with pytest.raises(SaslprepError):
        saslprep("\u0627\u0031")  # RandALCat first but not last (RFC 3454 s6)
    with pytest.raises(SaslprepError):
        saslprep("\u0627a\u0627")  # mixes RandALCat and LCat
    assert saslprep("\u0627\u0031\u0628") == "\u0627\u0031\u0628"


def test_secret_is_created_once_with_private_mode(tmp_path):
    path = tmp_path / "sub" / "auth-secret"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_short_secret_is_refused(tmp_path):
    path = tmp_path / "auth-secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_or_create_secret(path)


def test_proof_that_is_not_base64_fails_rfc5802_s7(context):
    client = ScramClient("user", "pencil")
    mech = ScramMechanism(context, settings())
    first = run(mech.start(client.first()))
    good = client.final(first.data)
    assert isinstance(run(mech.step(good[: good.index(b",p=")] + b",p=!!!!")), Failure)
