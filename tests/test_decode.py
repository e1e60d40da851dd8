"""Decoder edge cases: every broken header is Malformed, never another error."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import VICTIM, ping, raw, tcp, udp
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

from ips_inline.packet.decode import (
    FIN,
    PROTO_ICMP6,
    PROTO_TCP,
    PSH,
    SYN,
    URG,
    Malformed,
    _decode4,
    decode,
)


def test_tcp_fields() -> None:
    pkt = decode(tcp(sport=1234, dport=80, flags="FPU", seq=77, payload=b"hi"))
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.seq) == (PROTO_TCP, 1234, 80, 77)
    assert pkt.flags == FIN | PSH | URG
    assert pkt.payload == b"hi"
    assert pkt.dst_ip == VICTIM


def test_udp_and_icmp() -> None:
    assert decode(udp(dport=53)).dport == 53
    assert decode(ping()).icmp_type == 8


def test_ipv6_extension_headers_walked() -> None:
    raw = bytes(IPv6(src="fd77::30", dst="fd77::10") / IPv6ExtHdrHopByHop() / TCP(flags="S"))
    pkt = decode(raw)
    assert pkt.proto == PROTO_TCP and pkt.flags == SYN and pkt.src_ip == "fd77::30"


def test_ipv6_first_fragment_decodes_l4() -> None:
    raw = bytes(IPv6(src="fd77::30", dst="fd77::10") / IPv6ExtHdrFragment(m=1) / TCP(dport=22))
    pkt = decode(raw)
    assert pkt.fragment and pkt.dport == 22


def test_icmpv6_echo() -> None:
    pkt = decode(ping(src="fd77::30", dst="fd77::10"))
    assert pkt.proto == PROTO_ICMP6 and pkt.icmp_type == 128


def _tcp_with(doff: int, options: bytes = b"", flags: str = "S") -> bytes:
    raw = bytearray(bytes(IP(src="10.77.0.30", dst=VICTIM) / TCP(flags=flags)) + options)
    raw[32] = doff << 4
    struct.pack_into("!H", raw, 2, len(raw))
    return bytes(raw)


@pytest.mark.parametrize("raw", [
    b"",
    b"\x45",  # truncated IPv4
    b"\x45" + b"\x00" * 10,
    b"\x60" + b"\x00" * 20,  # truncated IPv6
    b"\x15" + b"\x00" * 30,  # version 1
    bytes([0x42]) + bytes(IP(dst=VICTIM))[1:],  # IHL 2 (8 bytes) < 20
    bytes([0x4F]) + bytes(IP(dst=VICTIM))[1:],  # IHL 60 > packet
    bytes(IP(dst=VICTIM, len=10)),  # total length below the header
    bytes(IP(dst=VICTIM, proto=6)) + b"\x00" * 5,  # truncated TCP
    bytes(IP(dst=VICTIM, proto=17)) + b"\x00" * 3,  # truncated UDP
    bytes(IP(dst=VICTIM, proto=1)) + b"\x08",  # truncated ICMP
    bytes(IP(dst=VICTIM) / UDP(len=4)),  # UDP length below its own header
], ids=lambda r: r[:4].hex() or "empty")
def test_broken_headers_are_malformed(raw: bytes) -> None:
    with pytest.raises(Malformed):
        decode(raw)


@pytest.mark.parametrize("doff", [4, 15])  # below the minimum; beyond the packet
def test_bad_tcp_header_length(doff: int) -> None:
    with pytest.raises(Malformed):
        decode(_tcp_with(doff))


@pytest.mark.parametrize("options", [
    b"\x02\x00\x00\x00",  # option length 0
    b"\x02\x08\x00\x00",  # option runs past the header
    b"\x01\x01\x01\x03",  # option kind without room for its length
])
def test_bad_tcp_options_are_no_reason_to_distrust_a_segment(options: bytes) -> None:
    """Linux stops parsing at a malformed option and keeps the segment: so
    does the decoder, or the flow would go untracked (and payload offences on
    it would never count toward a ban)."""
    pkt = decode(_tcp_with(6, options))
    assert pkt.flags == SYN and pkt.proto == PROTO_TCP


def test_good_options_pass() -> None:
    pkt = decode(_tcp_with(7, b"\x02\x04\x05\xb4\x01\x03\x03\x07\x00\x00\x00\x00"))
    assert pkt.flags == SYN


def test_ipv6_long_extension_chain_is_walked_to_its_end() -> None:
    """Twelve extension headers, then TCP: the host reads the TCP segment, so
    the decoder does too (a chain it gave up on would be accepted unseen)."""
    hop = b"\x00\x00" + b"\x00" * 6  # hop-by-hop pointing at another hop-by-hop
    last = b"\x06\x00" + b"\x00" * 6  # ... and the last one at TCP
    body = hop * 11 + last + bytes(TCP(dport=80, flags="S"))
    raw = bytes(IPv6(src="fd77::30", dst="fd77::10", nh=0, plen=len(body))) + body
    pkt = decode(raw)
    assert pkt.proto == PROTO_TCP and pkt.dport == 80


def test_ipv6_extension_chain_past_the_packet_is_malformed() -> None:
    hop = b"\x00\x00" + b"\x00" * 6
    raw = bytes(IPv6(src="fd77::30", dst="fd77::10", nh=0, plen=len(hop) * 3)) + hop * 3
    with pytest.raises(Malformed):
        decode(raw)


def test_ipv4_non_first_fragment_has_no_ports() -> None:
    raw = bytes(IP(src="10.77.0.30", dst=VICTIM, proto=6, frag=100) / (b"x" * 40))
    pkt = decode(raw)
    assert pkt.fragment and pkt.sport == 0 and pkt.payload == b""


_SYN_WITH_OPTIONS = raw(IP(dst=VICTIM) / TCP(flags="S", options=[
    ("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]))
_FIELDS = ("src", "dst", "proto", "sport", "dport", "flags", "seq", "icmp_type", "payload",
           "length", "fragment", "truncated")


def _outcome(fn, raw: bytes) -> tuple:
    try:
        pkt = fn(raw)
    except Malformed as exc:
        return ("malformed", exc.reason)
    return tuple(getattr(pkt, f) for f in _FIELDS)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([ping(), udp(), tcp(), _SYN_WITH_OPTIONS,
                        tcp(flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n")]),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
       st.sampled_from([0, 0, 0, 0, 1, 4, 8, 12, 20, 40]))  # mostly whole: the fast path
def test_the_one_unpack_fast_path_agrees_with_the_general_decoder(seed: bytes, flips,
                                                                  cut: int) -> None:
    """decode() takes option-less IPv4 TCP/UDP/ICMP in one unpack; whatever the
    bytes, it must decide as the general IPv4 path does."""
    raw = bytearray(seed)
    for pos, value in flips:
        if pos < len(raw):
            raw[pos] = value
    raw = bytes(raw[:max(len(raw) - cut, 1)])
    if raw[0] >> 4 != 4:
        return
    assert _outcome(decode, raw) == _outcome(_decode4, raw)
