"""The ``[[directory]]`` table of type ldap: every mistake is a ConfigError naming the key."""

from __future__ import annotations

import pytest

from ldap_helpers import ldap_table
from popbox.config import ConfigError, dump, from_mapping
from popbox.config.ldap import LdapSettings, parse_filter_template, parse_ldap_directory


@pytest.fixture
def table(tls_files):
    def make(**keys):
        return ldap_table(None, tls_files.ca_file, **{"uris": ["ldaps://dc1.example.com"], **keys})

    return make


def test_the_readme_example_parses(table, tls_files):
    settings = parse_ldap_directory(table(), "directory[0]")

    assert settings.uris == ("ldaps://dc1.example.com",)
    assert settings.filter.fields == ("local",)
    assert settings.ca_file == str(tls_files.ca_file)
    assert (settings.pool_size, settings.timeout, settings.retry_interval) == (16, 5.0, 10.0)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"colour": "blue"}, r"directory\[0\]\.colour: unknown setting"),
        ({"uris": []}, r"directory\[0\]\.uris: required"),
        ({"uris": ["http://dc1"]}, r"uris: 'http://dc1' must look like ldaps://host"),
        ({"uris": ["ldaps://dc1/dc=example"]}, r"uris: .*base_dn"),
        ({"uris": ["ldaps://dc1:99999"]}, r"uris: .* not a valid URI"),
        ({"uris": ["ldap://dc1"]}, r"uris: ldap://dc1 would send passwords unencrypted"),
        ({"base_dn": ""}, r"base_dn: required"),
        ({"scope": "deep"}, r"scope: 'deep' is not one of"),
        ({"ca_file": "/nonexistent/ca.pem"}, r"ca_file: /nonexistent/ca.pem is not a readable"),
        ({"timeout": 0}, r"timeout: must be a positive number"),
        ({"timeout": "5"}, r"timeout: must be a number of seconds"),
        ({"connect_timeout": 6}, r"connect_timeout: must be below timeout"),
        ({"pool_size": 0}, r"pool_size: must be at least 1"),
        ({"pool_size": 2.5}, r"pool_size: must be a whole number"),
        ({"starttls": "yes"}, r"starttls: must be true or false"),
        ({"filter": "uid=%u"}, r"filter: 'uid=%u' must be one parenthesised"),
        ({"filter": "(uid=%u))"}, r"filter: .* unbalanced parentheses"),
        ({"filter": "(uid=%x)"}, r"filter: %x is not a placeholder"),
        ({"filter": "(uid=ann)"}, r"filter: .* names no part of the login"),
        (
            {"filter": "(&(uid=%u)mail=x)"},
            r"filter: not an LDAP filter \(RFC 4515\): .* position 10",
        ),
        ({"filter": "(u id=%u)"}, r"filter: not an LDAP filter .* not an attribute description"),
        ({"bind_password": "", "bind_password_file": "/nonexistent/pw"}, r"file: cannot read"),
    ],
)
def test_mistakes_name_the_key(table, keys, message):
    with pytest.raises(ConfigError, match=message):
        parse_ldap_directory(table(**keys), "directory[0]")


def test_starttls_or_the_explicit_key_allows_ldap_uris(table):
    assert parse_ldap_directory(table(uris=["ldap://dc1"], starttls=True), "d").starttls
    plain = parse_ldap_directory(table(uris=["ldap://dc1"], allow_plaintext=True), "d")
    assert plain.allow_plaintext


def test_bind_password_comes_from_a_file_without_its_newline(table, tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text("s3cret with spaces\n")

    settings = parse_ldap_directory(
        table(bind_password="", bind_password_file=str(secret)), "directory[0]"
    )

    assert settings.bind_password == "s3cret with spaces"
    with pytest.raises(ConfigError, match="not both"):
        parse_ldap_directory(table(bind_password_file=str(secret)), "directory[0]")


def test_filter_placeholders_are_dovecots():
    template = parse_filter_template("(|(uid=%n)(mail=%u)(o=%d)(cn=100%%))", "filter")

    assert template.fields == ("local", "user", "domain")
    assert template.literals == ("(|(uid=", ")(mail=", ")(o=", ")(cn=100%))")


def test_a_directory_table_in_the_config_file_is_an_ldap_directory(table):
    config = from_mapping({"directory": [{"name": "corp", "type": "ldap", **table()}]})

    (directory,) = config.directories
    assert directory.name == "corp"
    assert isinstance(directory.settings, LdapSettings)
    shown = dump(config)
    assert 'filter = "(&(objectClass=inetOrgPerson)(uid=%n))"' in shown
    assert 'bind_password = "(set)"' in shown
    with pytest.raises(ConfigError, match=r'directory\[1\] \("corp"\)\.pool_size'):
        from_mapping({"directory": [{"name": "corp", "type": "ldap", **table(pool_size=0)}]})
