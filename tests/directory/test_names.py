"""Login names: default domain, case folding, DOMAIN\\user, user@REALM, aliases."""

from __future__ import annotations

import pytest

from popbox.config import ConfigError, from_mapping
from popbox.directory.base import LoginName
from popbox.directory.names import LoginNames


def names(**table: object) -> LoginNames:
    return LoginNames(from_mapping({"names": table}).names)


def test_without_rules_a_name_stays_as_typed_but_its_domain_is_folded():
    """RFC 5321 s2.4: the domain is case-insensitive; the local part may not be."""
    rules = names()
    assert rules.parse("Ann") == LoginName("Ann", "Ann", "Ann", "")
    assert rules.parse("Ann@Example.COM") == LoginName(
        "Ann@Example.COM", "Ann@example.com", "Ann", "example.com"
    )


def test_the_three_spellings_of_one_user_open_one_mailbox_when_configured():
    rules = names(
        default_domain="Example.com", lowercase=True, windows_domains=["EXAMPLE=example.com"]
    )
    for raw in ("ANN@Example.COM", "ann@example.com", "EXAMPLE\\ann", "ann", "example\\ANN"):
        parsed = rules.parse(raw)
        assert (parsed.user, parsed.local, parsed.domain) == (
            "ann@example.com",
            "ann",
            "example.com",
        )
        assert parsed.raw == raw


def test_a_kerberos_realm_is_a_domain_in_capitals():
    assert names().parse("ann@EXAMPLE.COM").user == "ann@example.com"


def test_an_unlisted_netbios_domain_is_taken_as_the_domain():
    assert names().parse("CORP\\ann").user == "ann@corp"


def test_aliases_map_a_login_to_another_users_mailbox():
    rules = names(default_domain="example.com", aliases=["boss@example.com=ann@example.com"])
    assert rules.parse("boss").user == "ann@example.com"
    assert rules.parse("boss").local == "ann"


@pytest.mark.parametrize("raw", ["", "@", "a\\b\\c", "\\ann", "ann@", "@example.com"])
def test_names_that_cannot_be_users_are_kept_to_fail_like_unknown_ones(raw):
    parsed = names(default_domain="example.com").parse(raw)
    assert parsed.raw == raw


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"aliases": ["x"]}, "names.aliases: 'x' is not of the form 'login=user'"),
        ({"default_domain": "a@b"}, "names.default_domain"),
        ({"lowercase": "yes"}, "names.lowercase: must be true or false"),
        ({"nope": 1}, "names.nope: unknown setting"),
    ],
)
def test_bad_names_settings_are_config_errors_naming_the_key(table, problem):
    with pytest.raises(ConfigError, match=problem):
        from_mapping({"names": table})
