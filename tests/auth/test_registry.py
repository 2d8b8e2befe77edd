"""build_registry: the configured mechanisms, in order, with their plaintext flag."""

from __future__ import annotations

from popbox.auth.base import AuthContext
from popbox.auth.oauth import OAuthBearerMechanism, XOAuth2Mechanism
from popbox.auth.registry import build_registry
from popbox.config import from_mapping
from popbox.store.memory import MemoryStore


def test_registry_offers_auth_mechanisms_in_order_with_plaintext_flags(tmp_path):
    """V0010: PLAIN, LOGIN and the bearer mechanisms carry the secret itself; SCRAM
    does not.  CAPA lists them in the configured order."""
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "auth": {
                "mechanisms": ["XOAUTH2", "SCRAM-SHA-256", "LOGIN", "OAUTHBEARER", "PLAIN"],
                "oauth_issuer": "https://idp.example",
                "oauth_audience": "pop3",
                "oauth_jwks": str(tmp_path / "jwks.json"),
            },
        }
    )
    registry = build_registry(config)
    assert registry.offered() == (
        ("XOAUTH2", True),
        ("SCRAM-SHA-256", False),
        ("LOGIN", True),
        ("OAUTHBEARER", True),
        ("PLAIN", True),
    )
    context = AuthContext(MemoryStore(), "127.0.0.1:1", tls_active=True)
    bearer = registry.create("OAUTHBEARER", context)
    xoauth2 = registry.create("XOAUTH2", context)
    assert isinstance(bearer, OAuthBearerMechanism)
    assert isinstance(xoauth2, XOAuth2Mechanism)
    assert bearer._checker is xoauth2._checker  # one JWKS cache for both
    assert (tmp_path / "auth-secret").exists()  # SCRAM's fake-salt secret


def test_default_registry_needs_no_settings(tmp_path):
    registry = build_registry(from_mapping({"data_dir": str(tmp_path)}))
    assert [name for name, _ in registry.offered()] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]


def test_registry_without_scram_creates_no_secret(tmp_path):
    config = from_mapping({"data_dir": str(tmp_path), "auth": {"mechanisms": ["PLAIN"]}})
    assert build_registry(config).offered() == (("PLAIN", True),)
    assert not (tmp_path / "auth-secret").exists()
