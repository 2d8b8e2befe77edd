"""Set-PopSettings Internal/ExternalConnectionSettings as ``pop3.*_connection_settings``."""

from __future__ import annotations

import pytest

from popbox.config import ConfigError, dump, from_mapping
from popbox.config.connection_settings import ConnectionSetting, advertised


def test_exchange_syntax_host_port_and_optional_encryption_is_kept():
    """ProtocolConnectionSettings: a host name, a port and an optional encryption type
    (SSL, TLS; blank: unencrypted), written ``<HostName>:<Port>:[<TLS | SSL>]``."""
    pop3 = from_mapping(
        {
            "pop3": {
                "internal_connection_settings": [
                    "pop.corp.example:995:ssl",
                    "pop.corp.example:110",
                ],
                "external_connection_settings": ["mail.example.com:995:SSL"],
            }
        }
    ).pop3
    assert advertised(pop3) == {
        "internal": [
            ConnectionSetting("pop.corp.example", 995, "SSL"),
            ConnectionSetting("pop.corp.example", 110, ""),
        ],
        "external": [ConnectionSetting("mail.example.com", 995, "SSL")],
    }


def test_the_internal_default_is_exchanges_built_from_the_listeners():
    """Exchange's default: <server FQDN>:995:SSL,<server FQDN>:110:TLS.  popbox builds it
    from its own listeners; the external default is blank, as Exchange's."""
    pop3 = from_mapping(
        {"pop3": {"listen": ["0.0.0.0:110"], "tls_listen": ["0.0.0.0:995", "[::]:1995"]}}
    ).pop3
    assert advertised(pop3, fqdn="mx1.example.net") == {
        "internal": [
            ConnectionSetting("mx1.example.net", 995, "SSL"),
            ConnectionSetting("mx1.example.net", 1995, "SSL"),
            ConnectionSetting("mx1.example.net", 110, "TLS"),
        ],
        "external": [],
    }


def test_config_show_prints_them():
    config = from_mapping({"pop3": {"external_connection_settings": ["mail.example.com:995:SSL"]}})
    assert 'external_connection_settings = ["mail.example.com:995:SSL"]' in dump(config)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("mail.example.com", "is not HOST:PORT"),
        ("mail.example.com:995:STARTTLS", "the encryption is SSL, TLS or nothing"),
        ("mail.example.com:0:SSL", "the port is a number from 1 to 65535"),
        ("mail.example.com:pop3s", "the port is a number from 1 to 65535"),
        (":995:SSL", "is not a host name"),
        ("a b:995", "is not a host name"),
        ("a:1:SSL:x", "is not HOST:PORT"),
    ],
)
def test_a_bad_entry_is_a_config_error_naming_the_key(entry, problem):
    with pytest.raises(ConfigError, match=rf"pop3\.external_connection_settings: .*{problem}"):
        from_mapping({"pop3": {"external_connection_settings": [entry]}})
