"""The ``compat`` setting: names accepted, the defaults each profile sets, its ranges."""

from __future__ import annotations

import importlib.util

import pytest

from popbox.config import ConfigError, from_mapping

EXCHANGE = ["exchange2007", "exchange2010", "exchange2013", "exchange-online"]
OAUTH = {"oauth_issuer": "https://id.example", "oauth_audience": "pop", "oauth_jwks": "j.json"}


def test_the_default_profile_is_modern_with_exact_sizes_2_1_4() -> None:
    """DESIGN.md s2: "The modern default keeps Exchange's semantics and adds every RFC
    extension"; exact sizes stay its default (issue 14 item 2)."""
    config = from_mapping({})
    assert config.compat == "modern"
    assert config.pop3.exact_rfc822_size is True
    assert config.server.max_sessions_per_user == 0


@pytest.mark.parametrize(
    "name", ["modern", "rfc1939", "exchange2007", "exchange2010", "exchange2013", "exchange-online"]
)
def test_every_profile_name_is_accepted_including_the_old_ones(name: str) -> None:
    """Configurations written for earlier releases (exchange2013, exchange2007, rfc1939)
    still load."""
    assert from_mapping({"compat": name}).compat == name


def test_an_unknown_profile_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^compat: 'exchange2003' is not one of modern, "):
        from_mapping({"compat": "exchange2003"})


@pytest.mark.parametrize("name", EXCHANGE)
def test_exchange_profiles_set_exchange_defaults_set_popsettings(name: str) -> None:
    """Set-PopSettings: Banner "The Microsoft Exchange POP3 service is ready.",
    EnableExactRFC822Size $false (2.1.4, 2.1.5), MaxConnectionsPerUser 16, LoginType
    SecureLogin; PreAuthenticated 1 min and Authenticated 30 min timeouts (V0002)."""
    pop3 = from_mapping({"compat": name}).pop3
    assert pop3.banner == "The Microsoft Exchange POP3 service is ready."
    assert pop3.exact_rfc822_size is False
    assert pop3.login_type == "secure_login"
    assert (pop3.unauthenticated_timeout, pop3.authenticated_timeout) == (60.0, 1800.0)
    assert from_mapping({"compat": name}).server.max_sessions_per_user == 16


def test_max_command_size_follows_the_release_e0006() -> None:
    """E0006: "the maximum length of a command is 47 bytes in Exchange 2007 and 512 bytes
    in Exchange 2010 and Exchange 2013"."""
    sizes = {name: from_mapping({"compat": name}).pop3.max_command_size for name in EXCHANGE}
    assert sizes == {
        "exchange2007": 47,
        "exchange2010": 512,
        "exchange2013": 512,
        "exchange-online": 512,
    }


@pytest.mark.parametrize("name", ["exchange2007", "exchange2010", "exchange2013"])
def test_on_premises_sasl_defaults_are_ntlm_gssapi_plain(name: str) -> None:
    """MailKit issue 119 and the decompiled CAPA code: ``SASL NTLM GSSAPI PLAIN``;
    GSSAPI only where the gssapi package is installed."""
    expected = ("NTLM", "GSSAPI", "PLAIN")
    if importlib.util.find_spec("gssapi") is None:
        expected = ("NTLM", "PLAIN")
    assert from_mapping({"compat": name}).auth.mechanisms == expected


def test_exchange_online_offers_xoauth2_once_a_token_issuer_is_set() -> None:
    """vmime issue 267: ``SASL PLAIN XOAUTH2``; email-oauth2-proxy issue 162: ``SASL
    PLAIN``.  XOAUTH2 needs an issuer to check tokens against."""
    assert from_mapping({"compat": "exchange-online"}).auth.mechanisms == ("PLAIN",)
    with_oauth = from_mapping({"compat": "exchange-online", "auth": OAUTH})
    assert with_oauth.auth.mechanisms == ("PLAIN", "XOAUTH2")


def test_a_key_set_in_the_file_wins_over_the_profile() -> None:
    config = from_mapping(
        {
            "compat": "exchange2013",
            "pop3": {"exact_rfc822_size": True, "banner": "hello"},
            "auth": {"mechanisms": ["PLAIN"]},
            "server": {"max_sessions_per_user": 2},
        }
    )
    assert config.pop3.exact_rfc822_size is True
    assert config.pop3.banner == "hello"
    assert config.auth.mechanisms == ("PLAIN",)
    assert config.server.max_sessions_per_user == 2


@pytest.mark.parametrize("name", EXCHANGE)
@pytest.mark.parametrize(
    ("key", "value"), [("unauthenticated_timeout", 29), ("authenticated_timeout", 3601)]
)
def test_exchange_profiles_keep_timeouts_within_30_s_to_1_h_v0002(
    name: str, key: str, value: int
) -> None:
    """Set-PopSettings: "Valid values are 00:00:30 to 1:00:00" for both timeouts."""
    with pytest.raises(ConfigError, match=rf"^pop3\.{key}: {value} is outside 30\.\.3600 "):
        from_mapping({"compat": name, "pop3": {key: value}})
    modern = from_mapping({"compat": "modern", "pop3": {key: value}})  # no such range there
    assert getattr(modern.pop3, key) == value
