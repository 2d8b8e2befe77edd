"""The NTLM and GSSAPI keys of [auth]: defaults, validation naming the key, registry wiring."""

from __future__ import annotations

import importlib.util
import tomllib

import pytest

from popbox.auth.base import AuthContext
from popbox.auth.gssapi import GssapiMechanism
from popbox.auth.ntlm import NtlmMechanism
from popbox.auth.registry import build_registry
from popbox.config import ConfigError, dump, from_mapping
from popbox.store.memory import MemoryStore


def test_defaults_keep_ntlmv1_off_and_strip_the_realm():
    auth = from_mapping({}).auth
    assert auth.ntlm_allow_v1 is False
    assert auth.ntlm_domain == "POPBOX"
    assert auth.gssapi_strip_realm is True
    assert auth.gssapi_principal_map == ()
    assert "NTLM" not in auth.mechanisms  # the NT hash is only stored when asked for


def test_ntlm_and_gssapi_settings_round_trip_through_dump():
    config = from_mapping(
        {
            "auth": {
                "mechanisms": ["NTLM", "GSSAPI"],
                "ntlm_allow_v1": True,
                "ntlm_domain": "CORP",
                "gssapi_keytab": "/etc/popbox/pop.keytab",
                "gssapi_service_name": "pop@mail.example.com",
                "gssapi_principal_map": ["scanner@EXAMPLE.COM=scans"],
            }
        }
    )
    assert from_mapping(tomllib.loads(dump(config))) == config


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ({"gssapi_principal_map": ["no-equals-sign"]}, "auth.gssapi_principal_map"),
        ({"gssapi_principal_map": ["=mailbox"]}, "auth.gssapi_principal_map"),
        ({"gssapi_service_name": "pop"}, "auth.gssapi_service_name"),
        ({"gssapi_service_name": "@host"}, "auth.gssapi_service_name"),
        ({"ntlm_allow_v1": "yes"}, "auth.ntlm_allow_v1"),
    ],
)
def test_bad_values_name_the_key(auth, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping({"auth": auth})


def test_gssapi_without_the_gssapi_package_is_a_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "gssapi" else real(name)
    )
    with pytest.raises(ConfigError, match=r"auth\.mechanisms: GSSAPI needs the gssapi package"):
        from_mapping({"auth": {"mechanisms": ["GSSAPI"]}})


def test_registry_builds_both_mechanisms_as_non_plaintext(tmp_path):
    """Neither sends the password, so both stay offered before TLS (V0010)."""
    config = from_mapping({"data_dir": str(tmp_path), "auth": {"mechanisms": ["NTLM", "GSSAPI"]}})
    registry = build_registry(config)
    assert registry.offered() == (("NTLM", False), ("GSSAPI", False))
    context = AuthContext(MemoryStore(), "127.0.0.1:1", tls_active=False)
    assert isinstance(registry.create("NTLM", context), NtlmMechanism)
    assert isinstance(registry.create("GSSAPI", context), GssapiMechanism)
