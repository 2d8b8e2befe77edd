"""OAUTHBEARER (RFC 7628) and XOAUTH2 mechanism objects, and the JWKS cache."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mechs import context_with, run
from popbox.auth.base import Challenge, Failure, Success
from popbox.auth.jwks import JwksCache, JwksUnavailable
from popbox.auth.oauth import (
    ERROR_JSON,
    OAuthBearerMechanism,
    OAuthSettings,
    TokenChecker,
    XOAuth2Mechanism,
)
from tokens import AUDIENCE, ISSUER, Issuer, oauthbearer, xoauth2

SETTINGS = OAuthSettings(
    issuer=ISSUER, audience=AUDIENCE, algorithms=("RS256", "ES256"), strip_domain="example.com"
)


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture(scope="module")
def checker(issuer, tmp_path_factory):
    path = issuer.write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json")
    return TokenChecker(SETTINGS, JwksCache(str(path)))


@pytest.fixture(scope="module")
def context():
    return context_with({"ann": "pw", "bob": "pw"})


def bearer(context, checker, message, kind=OAuthBearerMechanism):
    return run(kind(context, checker).start(message))


def refused(context, checker, message, kind=OAuthBearerMechanism):
    """RFC 7628 s3.2.2: the error JSON is sent as a challenge; after the client's dummy
    response the exchange fails."""
    mech = kind(context, checker)
    assert run(mech.start(message)) == Challenge(ERROR_JSON)
    step = run(mech.step(b"\x01"))
    assert isinstance(step, Failure)
    return step


def test_oauthbearer_valid_token_logs_in_rfc7628_s3_1(context, checker, issuer):
    """RFC 7628 s3.1: "n,a=...,^Aauth=Bearer <token>^A^A" with a valid token succeeds."""
    token = issuer.token(email="ann@example.com")
    assert bearer(context, checker, oauthbearer(token)) == Success("ann")
    assert bearer(context, checker, oauthbearer(token, "ann")) == Success("ann")


def test_xoauth2_valid_token_logs_in(context, checker, issuer):
    token = issuer.token(email="bob@example.com")
    assert bearer(context, checker, xoauth2(token, "bob"), XOAuth2Mechanism) == Success("bob")


def test_sub_claim_is_used_when_there_is_no_email(context, checker, issuer):
    token = issuer.token(sub="ann")
    assert bearer(context, checker, oauthbearer(token)) == Success("ann")


def test_es256_token_with_key_without_alg_is_accepted(context, checker, issuer):
    token = issuer.token(kid="ec-1", algorithm="ES256", sub="bob")
    assert bearer(context, checker, oauthbearer(token)) == Success("bob")


def test_no_initial_response_gets_empty_challenge_rfc5034_s4(context, checker, issuer):
    mech = OAuthBearerMechanism(context, checker)
    assert run(mech.start(None)) == Challenge(b"")
    assert run(mech.step(oauthbearer(issuer.token(sub="ann")))) == Success("ann")


def test_expired_token_is_refused_with_error_json_rfc7628_s3_2_2(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann", lifetime=-3600)))
    assert step.reason == "token expired"
    assert json.loads(ERROR_JSON)["status"] == "invalid_token"


def test_wrong_audience_is_refused(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann", aud="other")))
    assert step.reason == "token audience is wrong"


def test_wrong_issuer_is_refused(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann", iss="https://evil")))
    assert step.reason == "token issuer is wrong"


def test_bad_signature_is_refused(context, checker, issuer):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann", key=stranger)))
    assert step.reason == "token signature is wrong"


def test_tampered_payload_is_refused(context, checker, issuer):
    head, _body, sig = issuer.token(sub="bob").split(".")
    other = issuer.token(sub="ann").split(".")[1]
    refused(context, checker, oauthbearer(f"{head}.{other}.{sig}"))


def test_missing_exp_is_refused(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann", exp=None)))
    assert step.reason == "token lacks exp, iss or aud"


@pytest.mark.parametrize(
    "header", [{"alg": "HS256"}, {"alg": "none"}, {"alg": "RS512"}], ids=["hs", "none", "rs512"]
)
def test_algorithm_not_configured_is_refused(context, checker, issuer, header):
    """An HS256 token "signed" with the public key, or alg=none, must never pass."""

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    token = f"{b64({**header, 'kid': 'rsa-1'})}.{b64({'sub': 'ann'})}.AAAA"
    refused(context, checker, oauthbearer(token))


def test_unknown_kid_is_refused(context, checker, issuer):
    refused(context, checker, oauthbearer(issuer.token(sub="ann", kid="nope")))


def test_key_declared_for_another_alg_is_not_used(context, checker, issuer):
    token = issuer.token(sub="ann", kid="rsa-1", algorithm="PS256")
    refused(context, checker, oauthbearer(token))  # PS256 is not even configured


def test_token_for_user_without_mailbox_is_refused(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="carol")))
    assert step.user == "carol"


def test_authzid_other_than_token_user_is_refused(context, checker, issuer):
    step = refused(context, checker, oauthbearer(issuer.token(sub="ann"), authzid="bob"))
    assert step.user == "bob"


def test_xoauth2_user_other_than_token_user_is_refused(context, checker, issuer):
    token = issuer.token(sub="ann")
    mech = XOAuth2Mechanism(context, checker)
    assert run(mech.start(xoauth2(token, "bob"))) == Challenge(ERROR_JSON)
    assert isinstance(run(mech.step(b"")), Failure)  # XOAUTH2 clients answer empty


def test_token_without_user_claim_is_refused(context, checker, issuer):
    refused(context, checker, oauthbearer(issuer.token()))


def test_not_a_jwt_is_refused(context, checker):
    refused(context, checker, oauthbearer("opaque-token"))


@pytest.mark.parametrize(
    "message",
    [
        b"n,,auth=Bearer x\x01\x01",  # no ^A after the gs2 header
        b"n,,\x01auth=Bearer x\x01",  # no final ^A^A
        b"n,,\x01host=x\x01\x01",  # no auth
        b"p=tls-unique,,\x01auth=Bearer x\x01\x01",  # channel binding
        b"n,b=x,\x01auth=Bearer x\x01\x01",  # bad authzid
        b"n,,\x01auth=Basic eA==\x01\x01",  # not Bearer
        b"n,,\x01auth=Bearer x\x01auth=Bearer y\x01\x01",  # duplicate key
        b"n,,",
    ],
)
def test_malformed_oauthbearer_message_fails_rfc7628_s3_1(context, checker, message):
    assert isinstance(bearer(context, checker, message), Failure)


@pytest.mark.parametrize(
    "message", [b"user=ann\x01\x01", b"auth=Bearer x", b"user=\xff\x01auth=Bearer x\x01\x01"]
)
def test_malformed_xoauth2_message_fails(context, checker, message):
    assert isinstance(bearer(context, checker, message, XOAuth2Mechanism), Failure)


def test_second_message_without_refusal_fails(context, checker, issuer):
    mech = OAuthBearerMechanism(context, checker)
    run(mech.start(b"garbage"))
    assert isinstance(run(mech.step(oauthbearer(issuer.token(sub="ann")))), Failure)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_file_is_reloaded_after_ttl_and_on_unknown_kid(tmp_path, issuer):
    """Keys rotate: a new kid is found by reloading early, but not more than every 30 s."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [issuer.jwks()["keys"][0]]}))
    clock = Clock()
    cache = JwksCache(str(path), ttl=3600, clock=clock)
    assert run(cache.key_for("rsa-1", "RS256")) is not None
    path.write_text(json.dumps(issuer.jwks()))
    clock.now += 5
    assert run(cache.key_for("ec-1", "ES256")) is None  # too soon after the last load
    clock.now += 30
    assert run(cache.key_for("ec-1", "ES256")) is not None
    path.write_text(json.dumps({"keys": [issuer.jwks()["keys"][1]]}))
    clock.now += 3600
    assert run(cache.key_for("rsa-1", "RS256")) is None  # TTL reload dropped it


def test_jwks_failure_keeps_previous_keys(tmp_path, issuer):
    path = issuer.write_jwks(tmp_path / "jwks.json")
    clock = Clock()
    cache = JwksCache(str(path), ttl=10, clock=clock)
    assert run(cache.key_for("rsa-1", "RS256")) is not None
    path.write_text("not json")
    clock.now += 100
    assert run(cache.key_for("rsa-1", "RS256")) is not None


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"keys": 1}', '{"keys": [{"kty": "nope"}]}', '{"keys": [1]}'],
)
def test_unusable_jwks_is_unavailable_not_a_bad_token(tmp_path, content):
    """No keys at all is the server's problem: [SYS/TEMP], not [AUTH] (see oauth.py)."""
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(JwksUnavailable):
        run(JwksCache(str(path)).key_for("k", "RS256"))


def test_missing_jwks_file_is_unavailable(tmp_path):
    with pytest.raises(JwksUnavailable):
        run(JwksCache(str(tmp_path / "none.json")).key_for("k", "RS256"))


def test_oversized_jwks_is_unavailable(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_bytes(b" " * (1024 * 1024 + 10))
    with pytest.raises(JwksUnavailable):
        run(JwksCache(str(path)).key_for("k", "RS256"))


def test_encryption_keys_are_ignored(tmp_path, issuer):
    keys = issuer.jwks()["keys"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**keys[0], "use": "enc"}, keys[1]]}))
    cache = JwksCache(str(path))
    assert run(cache.key_for("rsa-1", "RS256")) is None
    assert run(cache.key_for("ec-1", "ES256")) is not None


def test_concurrent_sessions_share_one_jwks_reload(tmp_path, issuer):
    """Many sessions asking at once after the TTL cause one read, not one each."""
    import asyncio  # noqa: PLC0415 - only this test runs coroutines side by side

    path = issuer.write_jwks(tmp_path / "jwks.json")
    clock = Clock()
    cache = JwksCache(str(path), ttl=10, clock=clock)
    reads = []
    real_read = cache._read

    def counting_read() -> bytes:
        reads.append(1)
        return real_read()

    cache._read = counting_read  # type: ignore[method-assign]

    async def many() -> list[object]:
        return await asyncio.gather(*(cache.key_for("rsa-1", "RS256") for _ in range(5)))

    assert all(key is not None for key in run(many()))
    assert len(reads) == 1
