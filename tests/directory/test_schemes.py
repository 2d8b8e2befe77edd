"""Every password scheme issue 11 lists, verified against hashes Dovecot made."""

from __future__ import annotations

import pytest
from dovecot import doveadm_hash

from popbox.directory import schemes

PASSWORD = "s3cret pässword"  # a space and a non-ASCII letter: both must survive
# Issue 11's list, with Dovecot's .B64/.HEX suffixes on the schemes that take them.
SCHEMES = [
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "MD5-CRYPT",
    "BLF-CRYPT",
    "ARGON2ID",
    "ARGON2I",
    "SSHA512",
    "SSHA256",
    "SSHA",
    "SHA512",
    "SHA256",
    "PLAIN",
    "CLEAR",
    "SSHA512.HEX",
    "SSHA256.B64",
    "SSHA.HEX",
    "SHA512.HEX",
    "SHA256.B64",
    "SHA256.HEX",
    "PLAIN.B64",
    "PLAIN.HEX",
    "CRYPT",
]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_dovecot_hash_verifies_the_right_password_only(scheme: str) -> None:
    stored_text = doveadm_hash(scheme, PASSWORD)
    assert stored_text.upper().startswith("{" + scheme.upper() + "}")
    stored = schemes.parse(stored_text, "CRYPT")
    assert schemes.verify(stored, PASSWORD) is True
    assert schemes.verify(stored, PASSWORD[:-1]) is False
    assert schemes.verify(stored, PASSWORD.upper()) is False
    assert str(stored).upper() == stored_text.upper()


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT"])
def test_a_hash_without_prefix_is_read_in_dovecots_default_scheme_crypt(scheme: str) -> None:
    """Dovecot's passwd-file default_pass_scheme is CRYPT: crypt(3) tells the variant from
    the hash's own $id$ prefix."""
    bare = doveadm_hash(scheme, PASSWORD).partition("}")[2]
    stored = schemes.parse(bare, "CRYPT")
    assert stored.scheme == "CRYPT"
    assert schemes.verify(stored, PASSWORD) is True
    assert schemes.verify(stored, "other") is False


def test_traditional_des_crypt_is_read_as_crypt() -> None:
    # crypt(3)'s traditional DES form, as glibc makes it (perl -e 'crypt("test", "ab")').
    stored = schemes.parse("abgOeLfPimXQo", "CRYPT")
    assert schemes.verify(stored, "test") is True
    assert schemes.verify(stored, "tesu") is False


def test_a_bare_hash_uses_the_configured_default_scheme() -> None:
    bare = doveadm_hash("SHA256", PASSWORD).partition("}")[2]
    assert schemes.verify(schemes.parse(bare, "SHA256"), PASSWORD) is True


def test_bcrypt_refuses_an_over_long_password_instead_of_truncating_it() -> None:
    stored = schemes.parse(doveadm_hash("BLF-CRYPT", "x" * 72), "CRYPT")
    assert schemes.verify(stored, "x" * 72) is True
    assert schemes.verify(stored, "x" * 72 + "tail") is False


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{FOO}abc", "unknown password scheme 'FOO'"),
        ("{SHA512-CRYPT}garbage", "SHA512-CRYPT value is not a sha512_crypt hash"),
        ("{SSHA}!!!", "SSHA value is not valid b64"),
        ("{SHA256}AAAA", "SHA256 value has 3 octets, not a SHA256 hash"),
        ("{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "does not start with"),
        ("{PLAIN.XX}x", "the suffix .XX does not apply"),
        ("{SHA512-CRYPT.HEX}x", "the suffix .HEX does not apply"),
        ("{CRYPT}$9$nothing", "CRYPT value is none of"),
    ],
)
def test_a_hash_that_cannot_be_verified_is_refused_when_read(text: str, problem: str) -> None:
    with pytest.raises(schemes.SchemeError, match=problem.replace("$", r"\$")):
        schemes.parse(text, "CRYPT")


def test_only_the_key_stretching_schemes_need_a_thread() -> None:
    assert schemes.costly(schemes.parse(doveadm_hash("SHA512-CRYPT", "x"), "CRYPT"))
    assert schemes.costly(schemes.parse(doveadm_hash("ARGON2ID", "x"), "CRYPT"))
    assert not schemes.costly(schemes.parse(doveadm_hash("SSHA512", "x"), "CRYPT"))
    assert not schemes.costly(schemes.parse("{PLAIN}x", "CRYPT"))
