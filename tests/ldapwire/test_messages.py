"""LDAPv3 messages (RFC 4511 section 4) byte for byte: the requests popbox sends, the
replies it reads, and the stream cut into messages."""

from __future__ import annotations

import pytest

from popbox.ldapwire import ber, messages
from popbox.ldapwire.ber import BerError
from popbox.ldapwire.filters import compile_filter
from popbox.ldapwire.messages import Framer, Reply, Result, Search, decode


def test_simple_bind_request_s4_2():
    # LDAPMessage { 1, BindRequest { version 3, name "cn=a", simple "pw" } }
    assert messages.bind_request(1, "cn=a", "pw").hex() == (
        "3012020101600d0201030404" + b"cn=a".hex() + "8002" + b"pw".hex()
    )


def test_bind_request_sends_utf8():
    encoded = messages.bind_request(2, "cn=Jürgen", "pässword")
    assert "cn=Jürgen".encode() in encoded
    assert bytes((0x80, len("pässword".encode()))) + "pässword".encode() in encoded


def test_search_request_s4_5_1():
    search = Search("dc=x", 2, compile_filter("(uid=a)"), ("mail",), size_limit=2, time_limit=5)
    body = (
        ber.octets(b"dc=x")
        + bytes.fromhex("0a0102")  # scope: wholeSubtree
        + bytes.fromhex("0a0100")  # derefAliases: neverDerefAliases
        + bytes.fromhex("020102")  # sizeLimit
        + bytes.fromhex("020105")  # timeLimit
        + bytes.fromhex("010100")  # typesOnly FALSE
        + ber.sequence(ber.octets(b"uid"), ber.octets(b"a"), tag=0xA3)
        + ber.sequence(ber.octets(b"mail"))
    )
    assert messages.search_request(7, search) == ber.sequence(
        bytes.fromhex("020107"), ber.tlv(0x63, body)
    )


def test_start_tls_request_s4_14_1():
    oid = b"1.3.6.1.4.1.1466.20037"
    assert messages.start_tls_request(1) == bytes.fromhex("301d02010177188016") + oid


def test_unbind_request_s4_3():
    assert messages.unbind_request(3).hex() == "30050201034200"


def _result(op: int, code: int, message: str = "", *extra: bytes, mid: int = 1) -> bytes:
    body = ber.enumerated(code) + ber.octets(b"") + ber.octets(message.encode()) + b"".join(extra)
    return ber.sequence(ber.integer(mid), ber.tlv(op, body))


def _entry(dn: str, attributes: dict[str, list[bytes]], mid: int = 1) -> bytes:
    parts = [
        ber.sequence(ber.octets(name.encode()), ber.sequence(*map(ber.octets, values), tag=0x31))
        for name, values in attributes.items()
    ]
    body = ber.octets(dn.encode()) + ber.sequence(*parts)
    return ber.sequence(ber.integer(mid), ber.tlv(0x64, body))


def test_bind_response_with_active_directorys_diagnostic():
    text = "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 533"
    reply = decode(_result(0x61, 49, text, mid=4))
    assert reply == Reply(4, messages.BIND_RESPONSE, Result(49, "", text))


def test_search_entry_names_are_lower_cased_and_values_kept_as_octets():
    raw = _entry("uid=ann,dc=x", {"Mail": [b"ann@x"], "mailQuotaBytes": [b"10", b"\xff"]})
    reply = decode(raw)
    assert reply.op == messages.SEARCH_ENTRY
    assert reply.dn == "uid=ann,dc=x"
    assert reply.attributes == {"mail": (b"ann@x",), "mailquotabytes": (b"10", b"\xff")}


def test_search_done_reference_and_intermediate():
    assert decode(_result(0x65, 4)).result == Result(4, "", "")
    reference = ber.sequence(ber.integer(1), ber.sequence(ber.octets(b"ldap://b/"), tag=0x73))
    assert decode(reference) == Reply(1, messages.SEARCH_REFERENCE)
    intermediate = ber.sequence(ber.integer(1), ber.tlv(0x79, b""))
    assert decode(intermediate) == Reply(1, messages.INTERMEDIATE_RESPONSE)


def test_extended_response_name_and_controls_after_the_operation():
    name = ber.octets(messages.NOTICE_OF_DISCONNECTION.encode(), 0x8A)
    controls = ber.sequence(ber.sequence(ber.octets(b"1.2.3")), tag=0xA0)
    body = ber.enumerated(52) + ber.octets(b"") + ber.octets(b"shutting down") + name
    raw = ber.sequence(ber.integer(0), ber.tlv(0x78, body), controls)
    reply = decode(raw)
    assert reply.message_id == 0
    assert reply.result == Result(52, "", "shutting down", messages.NOTICE_OF_DISCONNECTION)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (ber.sequence(ber.integer(1)), "without a message ID and an operation"),
        (ber.sequence(ber.octets(b"1"), ber.tlv(0x61, b"")), "without a message ID"),
        (ber.sequence(ber.integer(1), ber.tlv(0x60, b"")), "is not a reply"),
        (ber.sequence(ber.integer(1), ber.tlv(0x61, ber.enumerated(0))), "LDAPResult without"),
        (ber.sequence(ber.integer(1), ber.tlv(0x64, ber.octets(b"dn"))), "SearchResultEntry"),
        (
            ber.sequence(
                ber.integer(1),
                ber.tlv(0x64, ber.octets(b"dn") + ber.sequence(ber.sequence(ber.octets(b"a")))),
            ),
            "PartialAttribute",
        ),
    ],
)
def test_malformed_replies_are_errors(raw, problem):
    with pytest.raises(BerError, match=problem):
        decode(raw)


def test_framer_joins_a_message_split_anywhere_and_splits_two_in_one_chunk():
    first, second = _result(0x61, 0, mid=1), _entry("uid=a", {"mail": [b"x" * 200]}, mid=2)
    stream = first + second
    for cut in range(1, len(stream)):
        framer = Framer(10_000)
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == [first, second]


def test_framer_refuses_what_is_not_an_ldap_message():
    with pytest.raises(BerError, match="is not LDAP"):
        Framer(1000).feed(b"HTTP/1.1 400 Bad Request\r\n")


def test_framer_refuses_a_message_over_its_limit_from_its_header():
    with pytest.raises(BerError, match="over the 1000-octet limit"):
        Framer(1000).feed(bytes.fromhex("308300ffff"))
