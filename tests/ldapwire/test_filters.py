"""Search filters: RFC 4515's string form compiled to RFC 4511's BER.

The encodings are checked against ldap3's (its filter parser and pyasn1's BER encoder:
an independent implementation), and against hand-written BER where ldap3 and RFC 4511
disagree or where the case is an error.
"""

from __future__ import annotations

import pytest
from ldap3.operation.search import compile_filter as ldap3_compile
from ldap3.operation.search import parse_filter as ldap3_parse
from pyasn1.codec.ber import encoder

from popbox.ldapwire import ber
from popbox.ldapwire.filters import FilterError, compile_filter, escape_value

FILTERS = [
    "(uid=ann)",
    "(&(objectClass=inetOrgPerson)(uid=ann))",
    "(|(uid=a)(mail=a@example.com))",
    "(!(uid=x))",
    "(uid=*)",
    "(uid=a*)",
    "(uid=*a)",
    "(uid=a*b*c)",
    "(uid=*b*)",
    "(cn>=5)",
    "(cn<=5)",
    "(cn~=Ann)",
    "(userAccountControl:1.2.840.113556.1.4.803:=2)",
    "(cn:=Fred)",
    "(2.5.4.3=Ann)",
    "(cn;lang-de=Anna)",
    r"(uid=\2a\29\28uid=\2a)",
    r"(uid=ann\00)",
    r"(cn=caf\c3\a9)",
    "(uid=Jürgen)",
    "(&(a=b)(|(c=d)(!(e=*f*))))",
    "(&(objectClass=user)(|(sAMAccountName=ann)(userPrincipalName=ann@corp.example.com)))",
]


def _ldap3(text: str) -> bytes:
    tree = ldap3_parse(
        text, None, auto_escape=False, auto_encode=True, validator=None, check_names=False
    )
    return bytes(encoder.encode(ldap3_compile(tree.elements[0])))


@pytest.mark.parametrize("text", FILTERS)
def test_encoding_matches_an_independent_encoder(text):
    assert compile_filter(text) == _ldap3(text)


def test_dn_attributes_true_is_ff_where_ldap3_sends_01():
    """RFC 4511 section 5.1: a BOOLEAN TRUE's contents octet is FF; ldap3 sends 01."""
    encoded = compile_filter("(cn:dn:2.4.6.8.10:=Dino)")
    assert encoded == bytes.fromhex("a919810a322e342e362e382e31308202636e830444696e6f8401ff")
    assert _ldap3("(cn:dn:2.4.6.8.10:=Dino)")[-1] == 0x01


def test_a_matching_rule_without_an_attribute():
    rule = ber.octets(b"caseExactMatch", 0x81)
    value = ber.octets(b"Dino", 0x83)
    assert compile_filter("(:caseExactMatch:=Dino)") == ber.sequence(rule, value, tag=0xA9)


def test_an_empty_piece_between_stars_constrains_nothing():
    assert compile_filter("(uid=a**b)") == compile_filter("(uid=a*b)")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("uid=ann", "'\\(' expected"),
        ("(uid=ann", "ends early"),
        ("(uid=ann))", "text after"),
        ("(&)", "'\\(' expected"),
        ("(=ann)", "no attribute"),
        ("(uid)", "no attribute"),
        ("(u id=ann)", "not an attribute description"),
        ("(uid=a(b)", "unescaped '\\('"),
        (r"(uid=\2)", "two hex digits"),
        (r"(uid=\zz)", "two hex digits"),
        ("(uid=a\x00)", "unescaped NUL"),
        ("(cn>=a*)", "unescaped '\\*'"),
        ("(:=x)", "attribute or a matching rule"),
        ("(cn:a:b:=x)", "attr\\[:dn\\]\\[:rule\\]"),
        ("(uid=\udc80)", "not Unicode"),
    ],
)
def test_malformed_filters_name_the_problem(text, problem):
    with pytest.raises(FilterError, match=problem):
        compile_filter(text)


def test_errors_give_the_position():
    with pytest.raises(FilterError, match="at position 10 of"):
        compile_filter("(&(uid=a)x)")


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("*)(uid=*", r"\2a\29\28uid=\2a"), ("\\", r"\5c"), ("a\x00", r"a\00"), ("ann", "ann")],
)
def test_escaped_values_are_one_literal_rfc4515_s3(value, escaped):
    assert escape_value(value) == escaped
    # Whatever the value, the filter stays one equality match of exactly its octets.
    equality = ber.sequence(ber.octets(b"uid"), ber.octets(value.encode()), tag=0xA3)
    assert compile_filter(f"(uid={escape_value(value)})") == equality
