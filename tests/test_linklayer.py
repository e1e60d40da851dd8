"""Link layers (sources/linklayer.py): every framing a real capture uses around IP,
built byte by byte, down to the IP packet the host's INPUT would see."""

from __future__ import annotations

import struct

import pytest
from packets import tcp

from ips_inline.sources.linklayer import stripper

V4 = tcp(flags="S")
V6 = tcp(src="fd77::30", dst="fd77::10", flags="S")
MACS = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"


def et(value: int) -> bytes:
    return struct.pack(">H", value)


def strip(linktype: int, frame: bytes, little: bool = True, wirelen: int | None = None):
    fn = stripper(linktype, little)
    assert fn is not None, linktype
    return fn(frame, len(frame) if wirelen is None else wirelen)


def eth(*layers: bytes) -> bytes:
    return MACS + b"".join(layers)


def mpls(label: int, bottom: bool) -> bytes:
    return struct.pack(">I", (label << 12) | (int(bottom) << 8) | 64)


SNAP_IP = b"\xaa\xaa\x03\x00\x00\x00" + et(0x0800)
PPPOE_SESSION = b"\x11\x00\x00\x01\x00\x00"

ETHERNET_SHAPES = {
    "ipv4": (eth(et(0x0800), V4), V4),
    "ipv6": (eth(et(0x86DD), V6), V6),
    "802.1q": (eth(et(0x8100), b"\x00\x0b", et(0x0800), V4), V4),
    "802.1ad qinq": (eth(et(0x88A8), b"\x00\x64", et(0x8100), b"\x00\x0b", et(0x86DD), V6), V6),
    "old qinq 0x9100": (eth(et(0x9100), b"\x00\x01", et(0x0800), V4), V4),
    "mpls one label": (eth(et(0x8847), mpls(16, True), V4), V4),
    "mpls label stack": (eth(et(0x8847), mpls(16, False), mpls(17, False), mpls(18, True), V6),
                         V6),
    "mpls multicast in vlan": (eth(et(0x8100), b"\x00\x0b", et(0x8848), mpls(5, True), V4), V4),
    "mpls pseudowire ethernet": (eth(et(0x8847), mpls(16, True), b"\0\0\0\0",
                                     eth(et(0x0800), V4)), V4),
    "pppoe session ipv4": (eth(et(0x8864), PPPOE_SESSION, et(0x0021), V4), V4),
    "pppoe session ipv6 in qinq": (eth(et(0x88A8), b"\0\1", et(0x8100), b"\0\2", et(0x8864),
                                       PPPOE_SESSION, et(0x0057), V6), V6),
    "802.3 llc/snap": (eth(et(len(SNAP_IP + V4)), SNAP_IP, V4), V4),
    "pbb": (eth(et(0x88E7), b"\0\0\0\1", eth(et(0x0800), V4)), V4),
    "vn-tag": (eth(et(0x8926), b"\0\0\0\0", et(0x8100), b"\0\x0b", et(0x0800), V4), V4),
    "fabricpath": (eth(et(0x8903), b"\0\0", eth(et(0x0800), V4)), V4),
}


@pytest.mark.parametrize("name", ETHERNET_SHAPES)
def test_ethernet_shapes(name):
    frame, ip = ETHERNET_SHAPES[name]
    assert strip(1, frame) == ip


@pytest.mark.parametrize("frame", [
    eth(et(0x0806), b"\0" * 28),  # ARP
    eth(et(0x8863), b"\x11\x09\0\0\0\0"),  # PPPoE discovery
    eth(et(0x8864), PPPOE_SESSION, et(0xC021), b"\1\1\0\4"),  # PPPoE LCP
    eth(et(38), b"\x42\x42\x03", b"\0" * 35),  # 802.3 spanning tree
    eth(et(50), b"\xaa\xaa\x03\x00\x00\x0c\x20\x00", b"\0" * 42),  # CDP (Cisco OUI)
    eth(et(0x88CC), b"\0" * 20),  # LLDP
    eth(et(0x8847), mpls(16, True), b"\x90" + b"\0" * 19),  # not IP below the labels
])
def test_frames_without_ip_are_not_ip(frame):
    assert strip(1, frame) is None


@pytest.mark.parametrize("frame", [
    MACS,  # no ethertype
    eth(et(0x8100), b"\0"),  # a VLAN tag cut short
    eth(et(0x8847), mpls(16, False), mpls(17, False)),  # labels with no bottom
    eth(et(0x8847), mpls(16, True)),  # nothing below the last label
    eth(et(0x8864), b"\x11\x00"),  # PPPoE header cut short
    eth(*[et(0x88E7) + b"\0\0\0\1" + MACS] * 20, et(0x0800), V4),  # PBB nested 20 deep
])
def test_frames_too_short_or_nested_too_deep_are_malformed(frame):
    assert strip(1, frame) == b""


@pytest.mark.parametrize("frame, ip", [
    (b"\xff\x03" + et(0x0021) + V4, V4),  # HDLC-like framing (address, control)
    (et(0x0021) + V4, V4),  # without address and control bytes
    (et(0x0057) + V6, V6),
    (b"\xff\x03\x21" + V4, V4),  # protocol field compression
    (b"\x57" + V6, V6),
    (et(0x0281) + mpls(3, True) + V4, V4),  # MPLS over PPP
])
@pytest.mark.parametrize("linktype", [9, 50])  # PPP, PPP_SERIAL
def test_ppp(linktype, frame, ip):
    assert strip(linktype, frame) == ip


@pytest.mark.parametrize("frame, want", [
    (b"\xff\x03" + et(0xC021) + b"\1\1\0\4", None),  # LCP
    (et(0x8021) + b"\1\1\0\4", None),  # IPCP
    (b"\xff\x03", b""),
    (b"\xff\x03\x00", b""),
])
def test_ppp_control_and_short_frames(frame, want):
    assert strip(9, frame) == want


def test_ppp_over_ethernet_link_type():
    assert strip(51, PPPOE_SESSION + et(0x0021) + V4) == V4


@pytest.mark.parametrize("frame, want", [
    (b"\x0f\x00" + et(0x0800) + V4, V4),
    (b"\x8f\x00" + et(0x86DD) + V6, V6),
    (b"\x0f\x00" + et(0x8847) + mpls(1, True) + V4, V4),
    (b"\x8f\x00" + et(0x8035) + b"\0" * 18, None),  # SLARP
    (b"\x0f\x00\x08", b""),
])
def test_cisco_hdlc(frame, want):
    assert strip(104, frame) == want


def test_fddi_llc_snap():
    fddi = b"\x50" + MACS
    assert strip(10, fddi + SNAP_IP + V4) == V4
    assert strip(10, fddi + b"\xe0\xe0\x03" + b"\0" * 30) is None  # IPX over LLC
    assert strip(10, fddi[:10]) == b""


@pytest.mark.parametrize("proto, body, want", [
    (0x0800, V4, V4), (0x86DD, V6, V6),
    (0x8100, b"\0\x0b" + et(0x0800) + V4, V4),
    (0x0004, SNAP_IP + V4, V4),  # ETH_P_802_2: an LLC header follows
    (0x0806, b"\0" * 28, None), (0x0003, b"\0" * 28, None),
])
def test_linux_cooked_v1_and_v2(proto, body, want):
    sll = et(0) + et(1) + et(6) + b"\0" * 8 + et(proto)
    sll2 = et(proto) + b"\0\0" + b"\0\0\0\2" + et(1) + b"\0\6" + b"\0" * 8
    assert strip(113, sll + body) == want
    assert strip(276, sll2 + body) == want


@pytest.mark.parametrize("linktype", [0, 108])
def test_bsd_loopback(linktype):
    assert strip(linktype, struct.pack("<I", 2) + V4) == V4
    assert strip(linktype, struct.pack(">I", 30) + V6) == V6
    assert strip(linktype, struct.pack("<I", 7) + b"\x00" * 20) is None


@pytest.mark.parametrize("linktype", [12, 14, 101, 228, 229])
def test_raw_ip(linktype):
    assert strip(linktype, V4) == V4


def tlv(kind: int, value: bytes, order: str, pad: bool = True) -> bytes:
    out = struct.pack(order + "HH", len(value) + 4, kind) + value
    return out + b"\0" * (-len(out) % 4 if pad else 0)


def nflog(order: str, *tlvs: bytes, family: int = 2) -> bytes:
    return bytes([family, 0]) + b"\x00\x05" + b"".join(tlvs)  # resource id: big-endian


@pytest.mark.parametrize("order, little", [("<", True), (">", False)])
def test_nflog_attributes_in_the_writer_byte_order(order, little):
    frame = nflog(order,
                  tlv(1, b"\x08\x00\x01\x00", order),  # packet header
                  tlv(10, b"drop:", order),  # prefix: 5 bytes, padded to 8
                  tlv(0x8000 | 3, b"\0" * 16, order),  # timestamp, nested bit set
                  tlv(9, V4, order, pad=False))  # the payload, last and unpadded
    assert strip(239, frame, little) == V4
    assert strip(239, nflog(order, tlv(9, V6, order), family=10), little) == V6


def test_nflog_byte_order_matters():
    """Read with the wrong byte order the lengths are nonsense: malformed, no crash."""
    frame = nflog("<", tlv(1, b"\x08\x00\x01\x00", "<"), tlv(9, V4, "<"))
    assert strip(239, frame, little=False) == b""


def test_nflog_bad_attribute_length_is_malformed():
    frame = nflog("<") + struct.pack("<HH", 256, 1) + b"\0" * 4
    assert strip(239, frame) == b""
    assert strip(239, nflog("<") + struct.pack("<HH", 2, 9)) == b""  # shorter than its header


def test_nflog_payload_cut_by_a_snap_length_is_what_was_captured():
    frame = nflog("<", tlv(1, b"\x08\x00\x01\x00", "<"), tlv(9, V4, "<"))
    assert strip(239, frame[:40], wirelen=len(frame)) == frame[16:40]


def test_nflog_without_payload_or_header():
    assert strip(239, nflog("<", tlv(10, b"prefix", "<"))) is None
    assert strip(239, b"\x02\x00") == b""
    assert strip(239, b"\x02\x01\x00\x00" + tlv(9, V4, "<")) == b""  # unknown version


def test_link_types_without_ip_have_no_stripper():
    for linktype in (105, 127, 195, 215, 230, 147):
        assert stripper(linktype, True) is None
