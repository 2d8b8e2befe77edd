"""The GSSAPI mechanism (RFC 4752) against a real KDC, driven by python-gssapi as the client."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import TYPE_CHECKING

import gssapi
import pytest

from popbox.auth.base import AuthContext, Challenge, Failure, Success
from popbox.auth.gssapi import GssapiMechanism, GssapiSettings, gssapi_settings, mailbox_for
from popbox.config import AuthConfig
from popbox.store.memory import MemoryStore

if TYPE_CHECKING:
    from pathlib import Path

    from krb5realm import Realm

SERVICE = gssapi.Name("pop@localhost", gssapi.NameType.hostbased_service)
NO_LAYER = b"\x01\x00\x00\x00"


@pytest.fixture
def settings(kerberos_realm: Realm, tmp_path: Path) -> GssapiSettings:
    return GssapiSettings(
        "pop@localhost",
        keytab=str(kerberos_realm.service_keytab),
        replay_cache=f"file2:{tmp_path / 'krb5.rcache'}",
        admins=frozenset({"bob"}),
    )


@pytest.fixture
def ccache(kerberos_realm: Realm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Log in as a principal: its TGT becomes this process's default credential cache."""

    def login(user: str) -> None:
        cache = tmp_path / f"{user}.ccache"
        kerberos_realm.kinit(user, cache)
        monkeypatch.setenv("KRB5CCNAME", f"FILE:{cache}")

    return login


async def mechanism(settings: GssapiSettings) -> GssapiMechanism:
    store = MemoryStore()
    await store.open()
    for user in ("alice", "bob"):
        await store.add_user(user, {})
    return GssapiMechanism(AuthContext(store, "127.0.0.1:4000", tls_active=False), settings)


class Client:
    """The client side of RFC 4752 section 3.1 on python-gssapi."""

    def __init__(self) -> None:
        self.context = gssapi.SecurityContext(name=SERVICE, usage="initiate")
        self.first_token = self.context.step()

    async def establish(self, mech: GssapiMechanism, *, initial: bool = False) -> bytes:
        """Run the context exchange; returns the server's wrapped layer offer."""
        if initial:
            step = await mech.start(self.first_token)
        else:
            assert await mech.start(None) == Challenge(b"")
            step = await mech.step(self.first_token)
        assert isinstance(step, Challenge)
        if not self.context.complete:  # mutual authentication: the AP-REP
            assert self.context.step(step.data) is None
            step = await mech.step(b"")
            assert isinstance(step, Challenge)
        return step.data

    def choose(self, offer: bytes, choice: bytes) -> bytes:
        assert self.context.unwrap(offer).message == NO_LAYER  # no layer, size 0
        return self.context.wrap(choice, encrypt=False).message


@pytest.mark.parametrize("initial", [False, True], ids=["challenge-first", "initial-response"])
async def test_alice_logs_in_rfc4752_s3_1(settings, ccache, initial):
    """RFC 4752 s3.1: context, then a wrapped 4-octet layer offer and the client's choice."""
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech, initial=initial)
    assert await mech.step(client.choose(offer, NO_LAYER)) == Success("alice")


async def test_authzid_equal_to_the_mailbox_is_accepted_rfc4752_s3_1(settings, ccache):
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    assert await mech.step(client.choose(offer, NO_LAYER + b"alice")) == Success("alice")


async def test_authzid_of_another_mailbox_is_refused(settings, ccache):
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    step = await mech.step(client.choose(offer, NO_LAYER + b"bob"))
    assert isinstance(step, Failure)
    assert step.user == "alice@TEST.POPBOX"


async def test_an_admin_may_name_another_mailbox_as_authzid(settings, ccache):
    ccache("bob")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    assert await mech.step(client.choose(offer, NO_LAYER + b"alice")) == Success("alice")


async def test_a_security_layer_that_was_not_offered_is_refused_rfc4752_s3_1(settings, ccache):
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    step = await mech.step(client.choose(offer, b"\x02\x00\x10\x00"))  # integrity
    assert isinstance(step, Failure)


async def test_a_principal_without_a_mailbox_is_refused(settings, ccache):
    ccache("carol")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    step = await mech.step(client.choose(offer, NO_LAYER))
    assert step == Failure("GSSAPI: no mailbox carol", "carol@TEST.POPBOX")


async def test_the_principal_map_wins_over_realm_stripping(settings, ccache):
    ccache("carol")
    mapped = GssapiSettings(
        settings.service_name,
        keytab=settings.keytab,
        replay_cache=settings.replay_cache,
        principal_map={"carol@TEST.POPBOX": "bob"},
    )
    mech, client = await mechanism(mapped), Client()
    offer = await client.establish(mech)
    assert await mech.step(client.choose(offer, NO_LAYER)) == Success("bob")


@pytest.mark.parametrize("rcache_type", [None, "none"], ids=["default", "env-says-none"])
async def test_a_replayed_first_token_is_refused_in_the_same_process(
    settings, ccache, monkeypatch, rcache_type
):
    """The same AP-REQ accepted once is refused the second time (MIT replay cache).

    The replay cache is named in the credential store, so an inherited
    KRB5RCACHETYPE=none (which turns MIT's default cache off) does not switch it off.
    """
    if rcache_type is not None:
        monkeypatch.setenv("KRB5RCACHETYPE", rcache_type)
    ccache("alice")
    client = Client()
    offer = await client.establish(await mechanism(settings))
    assert offer
    again = await mechanism(settings)
    step = await again.start(client.first_token)
    assert isinstance(step, Failure)
    assert "replay" in step.reason.lower()


async def test_garbage_tokens_fail_without_crashing(settings):
    mech = await mechanism(settings)
    assert isinstance(await mech.start(b"\x60\x03garbage" + os.urandom(40)), Failure)
    assert isinstance(await mech.step(b"more"), Failure)  # the exchange is over


async def test_a_keytab_without_the_service_key_fails(settings, ccache, kerberos_realm, tmp_path):
    ccache("alice")
    wrong = GssapiSettings(
        settings.service_name,
        keytab=str(kerberos_realm.user_keytabs["bob"]),
        replay_cache=settings.replay_cache,
    )
    step = await (await mechanism(wrong)).start(Client().first_token)
    assert isinstance(step, Failure)


async def test_a_non_empty_answer_to_the_ap_rep_is_refused(settings, ccache):
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    step = await mech.start(client.first_token)
    assert isinstance(step, Challenge)
    assert not client.context.complete
    assert isinstance(await mech.step(b"unexpected"), Failure)


@pytest.mark.parametrize(
    ("principal", "mailbox"),
    [
        ("alice@TEST.POPBOX", "alice"),
        ("alice@OTHER.REALM", None),  # another realm needs a map entry
        ("alice/admin@TEST.POPBOX", None),  # so does an instance
        ("mapped@OTHER.REALM", "bob"),
        ("@TEST.POPBOX", None),
    ],
)
def test_principal_to_mailbox_mapping(principal, mailbox):
    settings = GssapiSettings("pop@x", principal_map={"mapped@OTHER.REALM": "bob"})
    assert mailbox_for(principal, "TEST.POPBOX", settings) == mailbox


def test_realm_stripping_can_be_turned_off():
    settings = GssapiSettings("pop@x", strip_realm=False)
    assert mailbox_for("alice@TEST.POPBOX", "TEST.POPBOX", settings) is None


def test_settings_from_the_auth_section(tmp_path):
    auth = AuthConfig(
        gssapi_keytab="/etc/popbox/pop.keytab",
        gssapi_service_name="pop@mail.example.com",
        gssapi_principal_map=("svc@EXAMPLE.COM = scans",),
        admins=("root",),
    )
    settings = gssapi_settings(auth, tmp_path)
    assert settings.service_name == "pop@mail.example.com"
    assert settings.replay_cache == f"file2:{tmp_path / 'krb5.rcache'}"
    assert settings.principal_map == {"svc@EXAMPLE.COM": "scans"}
    assert settings.credential_store() == {
        b"keytab": b"/etc/popbox/pop.keytab",
        b"rcache": f"file2:{tmp_path / 'krb5.rcache'}".encode(),
    }
    assert gssapi_settings(AuthConfig(), tmp_path).service_name.startswith("pop@")


async def test_an_authzid_that_is_not_utf8_is_refused(settings, ccache):
    ccache("alice")
    mech, client = await mechanism(settings), Client()
    offer = await client.establish(mech)
    assert isinstance(await mech.step(client.choose(offer, NO_LAYER + b"\xff\xfe")), Failure)


async def test_without_realm_stripping_an_unmapped_principal_has_no_mailbox(settings, ccache):
    ccache("alice")
    strict = GssapiSettings(
        settings.service_name,
        keytab=settings.keytab,
        replay_cache=settings.replay_cache,
        strip_realm=False,
    )
    mech, client = await mechanism(strict), Client()
    offer = await client.establish(mech)
    step = await mech.step(client.choose(offer, NO_LAYER))
    assert step == Failure(
        "GSSAPI: no mailbox for principal alice@TEST.POPBOX", "alice@TEST.POPBOX"
    )


class TwoRoundContext:
    """A mechanism that needs two context tokens (Kerberos needs one): the loop must hold."""

    initiator_name = "alice@TEST.POPBOX"
    target_name = "pop/localhost@TEST.POPBOX"

    def __init__(self, **_: object) -> None:
        self.complete = False
        self.rounds = 0

    def step(self, token: bytes) -> bytes | None:
        self.rounds += 1
        self.complete = self.rounds == 2
        return None if self.complete else b"again:" + token

    def wrap(self, data: bytes, *, encrypt: bool) -> SimpleNamespace:
        assert not encrypt  # RFC 4752: integrity only
        return SimpleNamespace(message=b"wrapped:" + data)

    def unwrap(self, data: bytes) -> SimpleNamespace:
        return SimpleNamespace(message=data.removeprefix(b"wrapped:"))


async def test_multi_round_context_establishment(settings, monkeypatch):
    monkeypatch.setattr(gssapi, "SecurityContext", TwoRoundContext)
    monkeypatch.setattr(gssapi, "Credentials", lambda **_: None)
    mech = await mechanism(settings)
    assert await mech.start(b"one") == Challenge(b"again:one")
    assert await mech.step(b"two") == Challenge(b"wrapped:" + NO_LAYER)
    assert await mech.step(b"wrapped:" + NO_LAYER) == Success("alice")


def test_an_empty_credential_store_means_the_library_defaults():
    assert GssapiSettings("pop@x").credential_store() == {}
