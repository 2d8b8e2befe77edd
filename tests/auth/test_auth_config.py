"""The [auth] section of the configuration: defaults, validation naming the key, dump."""

from __future__ import annotations

import tomllib

import pytest

from popbox.config import AuthConfig, ConfigError, dump, from_mapping

OAUTH = {
    "mechanisms": ["OAUTHBEARER"],
    "oauth_issuer": "https://idp.example",
    "oauth_audience": "pop3",
    "oauth_jwks": "/etc/popbox/jwks.json",
}


def test_defaults_offer_the_mechanisms_that_need_no_settings():
    config = from_mapping({})
    assert config.auth == AuthConfig()
    assert config.auth.mechanisms == ("PLAIN", "LOGIN", "SCRAM-SHA-256")


def test_auth_section_round_trips_through_dump():
    config = from_mapping({"auth": {**OAUTH, "admins": ["root"], "ip_lockout_failures": 0}})
    again = from_mapping(tomllib.loads(dump(config)))
    assert again == config
    assert again.auth.admins == ("root",)


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ({"mechanisms": ["CRAM-MD5"]}, "auth.mechanisms"),
        ({"mechanisms": ["PLAIN", "PLAIN"]}, "auth.mechanisms"),
        ({"mechanisms": "PLAIN"}, "auth.mechanisms"),
        ({"scram_iterations": 4095}, "auth.scram_iterations"),
        ({"failure_half_life": 0}, "auth.failure_half_life"),
        ({"user_lockout_failures": -1}, "auth.user_lockout_failures"),
        ({"failure_delay_max": -1}, "auth.failure_delay_max"),
        ({"unknown": 1}, "auth.unknown"),
        ({**OAUTH, "oauth_issuer": ""}, "auth.oauth_issuer"),
        ({**OAUTH, "oauth_jwks": ""}, "auth.oauth_jwks"),
        ({**OAUTH, "oauth_user_claims": []}, "auth.oauth_user_claims"),
        ({**OAUTH, "oauth_algorithms": []}, "auth.oauth_algorithms"),
        ({**OAUTH, "oauth_jwks": "http://idp.example/jwks"}, "auth.oauth_jwks"),
    ],
)
def test_bad_auth_settings_name_the_key(auth, key):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        from_mapping({"auth": auth})
