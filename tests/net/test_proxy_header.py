"""PROXY protocol header parsing, byte in / result out (HAProxy proxy-protocol.txt).

Section numbers refer to the PROXY protocol specification ("pp" sections 2.1 and 2.2).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popbox.net.proxy import (
    MAX_V1_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    TrustedNetworks,
    parse_proxy_header,
)

V1_TCP4 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 995\r\n"
V1_WORST = (
    b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def v2(command: int, family: int, transport: int, body: bytes) -> bytes:
    """A v2 header: signature, version 2 + command, family + transport, length, body."""
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, (family << 4) | transport])
        + struct.pack("!H", len(body))
        + body
    )


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        bytes(map(int, src.split(".")))
        + bytes(map(int, dst.split(".")))
        + struct.pack("!HH", sport, dport)
    )


V2_TCP4 = v2(1, 1, 1, inet("192.0.2.7", "198.51.100.1", 56324, 995))
V2_TCP6 = v2(
    1,
    2,
    1,
    bytes.fromhex("20010db8000000000000000000000007")
    + bytes.fromhex("20010db8000000000000000000000001")
    + struct.pack("!HH", 40000, 110),
)


# -- version 1 ------------------------------------------------------------------------


def test_v1_tcp4_gives_client_and_destination_pp_s2_1() -> None:
    """pp 2.1: "PROXY" SP "TCP4" SP src SP dst SP srcport SP dstport CRLF."""
    assert parse_proxy_header(V1_TCP4) == ProxyHeader(
        1, ("192.0.2.7", 56324), ("198.51.100.1", 110), len(V1_TCP4)
    )


def test_v1_tcp6_gives_client_pp_s2_1() -> None:
    """pp 2.1: TCP6 carries IPv6 addresses in their usual text form."""
    header = parse_proxy_header(V1_TCP6)
    assert header == ProxyHeader(1, ("2001:db8::7", 56324), ("2001:db8::1", 995), len(V1_TCP6))


def test_v1_length_stops_at_crlf_so_client_bytes_are_left_pp_s2_1() -> None:
    """pp 2.1: the header ends at the first CRLF; what follows is the client's stream."""
    header = parse_proxy_header(V1_TCP4 + b"USER alice\r\n")
    assert header is not None
    assert header.length == len(V1_TCP4)


def test_v1_unknown_uses_the_socket_address_and_ignores_the_rest_pp_s2_1() -> None:
    """pp 2.1: with UNKNOWN "the receiver must ignore anything presented before the CRLF"."""
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, None, None, 15)
    assert parse_proxy_header(V1_WORST) == ProxyHeader(1, None, None, MAX_V1_LENGTH)


def test_v1_worst_case_is_107_octets_pp_s2_1() -> None:
    """pp 2.1: "a receiver can always safely ... read 107 bytes"."""
    assert len(V1_WORST) == MAX_V1_LENGTH


def test_v1_port_extremes_pp_s2_1() -> None:
    """pp 2.1: ports are decimal integers from 0 to 65535."""
    header = parse_proxy_header(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n")
    assert header is not None
    assert header.source == ("0.0.0.0", 0)  # noqa: S104 - a parsed address, not a bind
    assert header.destination == ("255.255.255.255", 65535)


@pytest.mark.parametrize("cut", range(len(V1_TCP4)))
def test_v1_every_prefix_needs_more_bytes_pp_s2_1(cut: int) -> None:
    """pp 2.1: the receiver waits for the CRLF (a header may arrive in pieces)."""
    assert parse_proxy_header(V1_TCP4[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"USER alice\r\n", id="pop3-command"),
        pytest.param(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", id="lower-case"),
        pytest.param(b"PROXY\r\n", id="no-protocol"),
        pytest.param(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", id="bad-protocol"),
        pytest.param(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", id="udp"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", id="missing-port"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", id="extra-field"),
        pytest.param(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", id="double-space"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", id="trailing-space"),
        pytest.param(b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", id="tab"),
        pytest.param(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", id="short-ipv4"),
        pytest.param(b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", id="octet-overflow"),
        pytest.param(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", id="octal-looking-ipv4"),
        pytest.param(b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", id="ipv6-in-tcp4"),
        pytest.param(b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", id="ipv4-in-tcp6"),
        pytest.param(b"PROXY TCP4 host.example 5.6.7.8 1 2\r\n", id="hostname"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", id="port-overflow"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", id="negative-port"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 0110 2\r\n", id="leading-zero-port"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", id="signed-port"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", id="non-ascii-digit"),
        pytest.param(b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", id="non-ascii-address"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", id="bare-lf"),
        pytest.param(b"PROXY " + b"x" * 101, id="no-crlf-in-107"),
        pytest.param(b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", id="unknown-too-long"),
    ],
)
def test_v1_malformed_header_is_refused_pp_s2_1(data: bytes) -> None:
    """pp 2.1: a receiver must not try to guess at a header it cannot parse exactly."""
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)


def test_v1_garbage_is_refused_before_107_octets_arrive_pp_s2_1() -> None:
    """A peer cannot hold the connection by trickling bytes that can never be a header."""
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(b"G")
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(b"PROXX")


# -- version 2 ------------------------------------------------------------------------


def test_v2_tcp4_gives_client_and_destination_pp_s2_2() -> None:
    """pp 2.2: AF_INET: 4-octet source, destination, then 2-octet ports, network order."""
    assert parse_proxy_header(V2_TCP4) == ProxyHeader(
        2, ("192.0.2.7", 56324), ("198.51.100.1", 995), len(V2_TCP4)
    )


def test_v2_tcp6_gives_client_pp_s2_2() -> None:
    """pp 2.2: AF_INET6: 16-octet addresses, then the two ports."""
    assert parse_proxy_header(V2_TCP6) == ProxyHeader(
        2, ("2001:db8::7", 40000), ("2001:db8::1", 110), len(V2_TCP6)
    )


def test_v2_tlvs_after_the_address_block_are_skipped_pp_s2_2() -> None:
    """pp 2.2: TLVs follow the addresses inside the announced length; we ignore them."""
    tlvs = b"\x01\x00\x02h2" + b"\x20\x00\x05\x07\x00\x00\x00\x00" + b"\x04\x00\x03abc"
    data = v2(1, 1, 1, inet("10.1.2.3", "10.0.0.1", 1234, 110) + tlvs)
    header = parse_proxy_header(data + CLIENT_HELLO)
    assert header == ProxyHeader(2, ("10.1.2.3", 1234), ("10.0.0.1", 110), len(data))


def test_v2_local_uses_the_socket_address_pp_s2_2() -> None:
    """pp 2.2: LOCAL: "the receiver must ... use the real connection endpoints"."""
    assert parse_proxy_header(v2(0, 0, 0, b"")) == ProxyHeader(2, None, None, 16)
    # A LOCAL header may still carry (ignored) addresses.
    with_addresses = v2(0, 1, 1, inet("1.1.1.1", "2.2.2.2", 1, 2))
    assert parse_proxy_header(with_addresses) == ProxyHeader(2, None, None, 28)


def test_v2_local_may_be_shorter_than_an_address_block_pp_s2_2() -> None:
    """pp 2.2: LOCAL ignores the address block, so a short one is no error."""
    assert parse_proxy_header(v2(0, 1, 1, b"")) == ProxyHeader(2, None, None, 16)


def test_v2_unspec_and_unix_families_use_the_socket_address_pp_s2_2() -> None:
    """pp 2.2: AF_UNSPEC carries no address; AF_UNIX paths are not a client IP."""
    assert parse_proxy_header(v2(1, 0, 0, b"")) == ProxyHeader(2, None, None, 16)
    unix = v2(1, 3, 1, b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0"))
    assert parse_proxy_header(unix) == ProxyHeader(2, None, None, 16 + 216)


def test_v2_length_covers_exactly_the_header_pp_s2_2() -> None:
    """pp 2.2: the 16-bit length counts the octets after the fixed 16; the rest is data."""
    header = parse_proxy_header(V2_TCP4 + CLIENT_HELLO)
    assert header is not None
    assert header.length == 16 + 12


@pytest.mark.parametrize("cut", range(len(V2_TCP4)))
def test_v2_every_prefix_needs_more_bytes_pp_s2_2(cut: int) -> None:
    """pp 2.2: a receiver reads 16 octets, then the announced length."""
    assert parse_proxy_header(V2_TCP4[:cut]) is None


def test_v2_unspecified_transport_is_accepted_pp_s2_2() -> None:
    """pp 2.2: transport UNSPEC with an INET family: the addresses still apply."""
    header = parse_proxy_header(v2(1, 1, 0, inet("1.2.3.4", "5.6.7.8", 9, 10)))
    assert header is not None
    assert header.source == ("1.2.3.4", 9)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(V2_SIGNATURE[:5] + b"X", id="bad-signature"),
        pytest.param(V2_SIGNATURE + b"\x11", id="version-1"),
        pytest.param(V2_SIGNATURE + b"\x31", id="version-3"),
        pytest.param(V2_SIGNATURE + b"\x22", id="command-2"),
        pytest.param(V2_SIGNATURE + b"\x2f\x11\x00\x0c", id="command-15"),
        pytest.param(v2(1, 4, 1, b"\0" * 12), id="family-4"),
        pytest.param(v2(1, 1, 3, b"\0" * 12), id="transport-3"),
        pytest.param(v2(1, 1, 2, inet("1.2.3.4", "5.6.7.8", 9, 10)), id="datagram"),
        pytest.param(v2(1, 1, 1, b"\0" * 11), id="inet-block-short"),
        pytest.param(v2(1, 2, 1, b"\0" * 35), id="inet6-block-short"),
        pytest.param(v2(1, 3, 1, b"\0" * 215), id="unix-block-short"),
    ],
)
def test_v2_malformed_header_is_refused_pp_s2_2(data: bytes) -> None:
    """pp 2.2: anything but version 2, LOCAL/PROXY and a known family is refused."""
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)


def test_v2_short_length_is_refused_before_the_body_arrives_pp_s2_2() -> None:
    """A length too short for the address block is refused from the 16 fixed octets."""
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(V2_SIGNATURE + b"\x21\x11\x00\x04")


def test_v2_long_length_waits_for_the_whole_header_pp_s2_2() -> None:
    """pp 2.2: a header announcing 65535 octets is incomplete until they have arrived."""
    head = V2_SIGNATURE + b"\x21\x11\xff\xff" + inet("1.2.3.4", "5.6.7.8", 1, 2)
    assert parse_proxy_header(head) is None
    header = parse_proxy_header(head + b"\0" * (65535 - 12))
    assert header is not None
    assert header.length == 16 + 65535


# -- properties -----------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_give_a_header_none_or_proxy_header_error(data: bytes) -> None:
    try:
        header = parse_proxy_header(data)
    except ProxyHeaderError:
        return
    if header is not None:
        assert 0 < header.length <= len(data)


@given(st.sampled_from([V1_TCP4, V1_TCP6, V1_WORST, V2_TCP4, V2_TCP6]), st.binary(max_size=64))
def test_client_bytes_after_a_header_never_change_it(header: bytes, tail: bytes) -> None:
    assert parse_proxy_header(header + tail) == parse_proxy_header(header)


# -- trusted networks -----------------------------------------------------------------


def test_trusted_networks_match_cidrs_and_single_addresses() -> None:
    trusted = TrustedNetworks(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert "10.200.3.4" in trusted
    assert "192.0.2.7" in trusted
    assert "192.0.2.8" not in trusted
    assert "2001:db8::99" in trusted
    assert "2001:db9::1" not in trusted


def test_trusted_networks_see_ipv4_clients_of_dual_stack_sockets() -> None:
    assert "::ffff:10.1.2.3" in TrustedNetworks(["10.0.0.0/8"])


def test_trusted_networks_ignore_non_ip_peers() -> None:
    trusted = TrustedNetworks(["0.0.0.0/0"])
    assert "/run/popbox.sock" not in trusted
    assert None not in trusted
    assert "fe80::1%eth0" not in trusted


def test_no_trusted_networks_trusts_nobody() -> None:
    trusted = TrustedNetworks([])
    assert not trusted
    assert "127.0.0.1" not in trusted


def test_trusted_networks_refuse_a_bad_entry() -> None:
    with pytest.raises(ValueError, match="not"):
        TrustedNetworks(["10.0.0.0/33"])
