"""``[tls]`` ACME settings are validated at load, with one message naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from popbox.config import ConfigError, dump, from_mapping

GOOD = {
    "acme_directory": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "acme_domains": ["mail.example.org", "pop.example.org"],
    "acme_contact": "postmaster@example.org",
}


def load_tls(**tls: Any) -> Any:
    return from_mapping({"tls": {**GOOD, **tls}}).tls


def test_defaults_and_show_round_trip() -> None:
    tls = load_tls()
    assert tls.acme_http_listen == "0.0.0.0:80"
    assert tls.acme_renew_before == 30 * 86400
    shown = dump(from_mapping({"tls": GOOD}))
    assert 'acme_domains = ["mail.example.org", "pop.example.org"]' in shown
    assert 'acme_http_listen = "0.0.0.0:80"' in shown


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"acme_domains": []}, "tls.acme_domains: name at least one domain"),
        ({"acme_domains": ["*.example.org"]}, "tls.acme_domains: '*.example.org': a wildcard"),
        ({"acme_domains": ["bad_name.example"]}, "'bad_name.example' is not a valid DNS name"),
        ({"acme_domains": ["-a.example"]}, "'-a.example' is not a valid DNS name"),
        ({"acme_domains": ["192.0.2.1"]}, "an IP address is not a domain name"),
        ({"acme_domains": ["a.example", "A.example."]}, "a domain is listed twice"),
        ({"acme_directory": "http://ca.example/dir"}, "tls.acme_directory: 'http://ca.example"),
        ({"acme_contact": "not an address"}, "tls.acme_contact: 'not an address'"),
        ({"acme_http_listen": "80"}, "tls.acme_http_listen: '80' must look like \"host:port\""),
        ({"acme_renew_before": 0}, "tls.acme_renew_before: must be a number of seconds"),
        ({"acme_timeout": float("inf")}, "tls.acme_timeout: must be a number of seconds"),
        (
            {"cert_file": "/etc/c.pem", "key_file": "/etc/k.pem"},
            "tls.acme_directory: leave tls.cert_file and tls.key_file empty",
        ),
    ],
)
def test_bad_acme_settings_name_the_key(tls: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_tls(**tls)
    assert message in str(caught.value)


def test_domains_without_directory_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"tls\.acme_domains: set tls\.acme_directory too"):
        from_mapping({"tls": {"acme_domains": ["mail.example.org"]}})
