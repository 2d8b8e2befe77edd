"""The [[directory]] chain in the configuration file."""

from __future__ import annotations

import pytest

from popbox.config import ConfigError, dump, from_mapping, warnings
from popbox.config.directory_sections import DirectoryConfig, InternalSettings, PasswdFileSettings


def test_no_directory_configured_means_the_internal_store_alone():
    """Configurations written before directories existed mean what they did."""
    assert from_mapping({}).directories == (
        DirectoryConfig("internal", "internal", InternalSettings()),
    )


def test_directories_keep_their_order_domains_and_settings():
    config = from_mapping(
        {
            "directory": [
                {
                    "name": "corp",
                    "type": "passwd-file",
                    "path": "/etc/corp/%d",
                    "domains": ["Corp.Example"],
                    "username_format": "%n",
                },
                {"name": "local", "type": "internal"},
            ]
        }
    )
    assert config.directories == (
        DirectoryConfig(
            "corp",
            "passwd-file",
            PasswdFileSettings("/etc/corp/%d", "CRYPT", "%n"),
            ("corp.example",),
        ),
        DirectoryConfig("local", "internal", InternalSettings()),
    )
    shown = dump(config)
    assert '[[directory]]\nname = "corp"\ntype = "passwd-file"\ndomains = ["corp.example"]' in shown


@pytest.mark.parametrize(
    ("directories", "problem"),
    [
        ({}, r"directory: must be an array of tables \(\[\[directory\]\]\)"),
        ([], r"directory: must be an array of tables"),
        ([{"type": "internal"}], r"directory\[1\].name: required"),
        (
            [{"name": "a", "type": "internal"}, {"name": "a", "type": "internal"}],
            r'directory\[2\] \("a"\).name: "a" is used by another directory',
        ),
        (
            [{"name": "a", "type": "nis"}],
            r"directory\[1\] \(\"a\"\).type: 'nis' is not one of internal, passwd-file, ldap",
        ),
        (
            [{"name": "a", "type": "internal", "path": "x"}],
            r"directory\[1\] \(\"a\"\).path: unknown setting",
        ),
        ([{"name": "a", "type": "passwd-file"}], r"\.path: required"),
        (
            [{"name": "a", "type": "passwd-file", "path": "/x", "username_format": "%n"}],
            r'"%n" needs one file per domain',
        ),
        (
            [{"name": "a", "type": "internal", "domains": "example.com"}],
            r"\.domains: must be a list",
        ),
        ([{"name": "corp", "type": "ldap"}], r'directory\[1\] \("corp"\)\.uris: required'),
    ],
)
def test_a_bad_directory_table_is_a_config_error_naming_it(directories, problem):
    with pytest.raises(ConfigError, match=problem):
        from_mapping({"directory": directories})


def test_config_check_warns_of_scram_without_an_internal_directory():
    config = from_mapping({"directory": [{"name": "f", "type": "passwd-file", "path": "/x"}]})
    assert warnings(config) == [
        (
            'auth.mechanisms offers SCRAM-SHA-256, but no [[directory]] is of type "internal": '
            "only the store's own users have the secrets they need"
        )
    ]
    assert warnings(from_mapping({})) == []
