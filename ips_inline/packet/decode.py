"""Fast-path decoder: raw L3 bytes (what NFQUEUE hands over) -> Packet.

Headers are sliced with `struct`, never parsed into dpkt/scapy object trees:
per-packet object parsers cost about 4x (shared/README.md). Anything that does
not decode raises Malformed, which the engine counts and decides by policy.
"""

from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_ntop
from struct import Struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

PROTO_NAMES = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMP6: "IPv6-ICMP"}

_IP4 = Struct("!BBHHHBBH4s4s")
# An option-less IPv4 header and its TCP or UDP header, in one unpack.
_IP4_TCP = Struct("!xxHxxHxxxx4s4sHHIIBB")
_IP4_UDP = Struct("!xxHxxHxxxx4s4sHHH")
_IP4_ICMP = Struct("!xxHxxHxxxx4s4sBB")
_UDP = Struct("!HHH")
_TCP = Struct("!HHIIBB")
_V6_EXT = frozenset((0, 43, 60, 51))  # hop-by-hop, routing, destination options, AH
_V6_FRAG = 44
_MAX_EXT = 8  # longer extension chains are treated as malformed (evasion bait)


# Every reason Malformed can carry (metrics export them all from the start).
MALFORMED_REASONS = ("empty", "ip_version", "ipv4_truncated", "ipv4_header_length",
                     "ipv6_truncated", "ipv6_ext_truncated", "ipv6_ext_chain", "tcp_truncated",
                     "tcp_header_length", "tcp_options", "udp_truncated", "udp_length",
                     "icmp_truncated", "decode_error")


class Malformed(ValueError):
    """The bytes are not a packet this decoder can trust; `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Packet:
    """One decoded packet. Addresses stay raw bytes (4 or 16) so the hot path
    never formats them; `src_ip`/`dst_ip` format on demand for alerts."""

    # icmp_code is set (with icmp_type) only where an ICMP header is decoded:
    # every other packet skips the store. EVE reads it for ICMP alerts.
    __slots__ = ("src", "dst", "proto", "sport", "dport", "flags", "seq",
                 "icmp_type", "icmp_code", "payload", "length", "fragment", "truncated")

    def __init__(self, src: bytes, dst: bytes, proto: int, length: int, sport: int = 0,
                 dport: int = 0, flags: int = 0, seq: int = 0, payload: bytes = b"") -> None:
        self.src = src
        self.dst = dst
        self.proto = proto
        self.length = length
        self.sport = sport
        self.dport = dport
        self.flags = flags
        self.seq = seq
        self.payload = payload
        self.icmp_type = -1
        self.fragment = False
        self.truncated = False  # the IP header claims more bytes than we were given

    @property
    def src_ip(self) -> str:
        return format_ip(self.src)

    @property
    def dst_ip(self) -> str:
        return format_ip(self.dst)


def format_ip(raw: bytes) -> str:
    return inet_ntop(AF_INET if len(raw) == 4 else AF_INET6, raw)


def decode(buf: bytes) -> Packet:
    """Decode one IPv4 or IPv6 packet starting at the IP header."""
    n = len(buf)
    # Nearly all traffic: IPv4 without options, unfragmented, complete, TCP,
    # UDP or ICMP. One unpack, one object; anything else takes the general path.
    if n >= 28 and buf[0] == 0x45:
        proto = buf[9]
        if proto == PROTO_TCP and n >= 40:
            total, frag, src, dst, sport, dport, seq, _ack, doff, flags = _IP4_TCP.unpack_from(buf)
            if total == n and not frag & 0x3FFF:
                hlen = (doff >> 4) * 4
                if hlen < 20 or 20 + hlen > n:
                    raise Malformed("tcp_header_length")
                if hlen > 20 and flags & SYN:
                    _check_options(buf, 40, 20 + hlen)
                return Packet(src, dst, proto, n, sport, dport, flags, seq, buf[20 + hlen:])
        elif proto == PROTO_UDP:
            total, frag, src, dst, sport, dport, ulen = _IP4_UDP.unpack_from(buf)
            if total == n and not frag & 0x3FFF:
                if ulen < 8 or 20 + ulen > n:  # the kernel drops these too
                    raise Malformed("udp_length")
                return Packet(src, dst, proto, n, sport, dport, 0, 0, buf[28:20 + ulen])
        elif proto == PROTO_ICMP:
            total, frag, src, dst, icmp_type, icmp_code = _IP4_ICMP.unpack_from(buf)
            if total == n and not frag & 0x3FFF:
                pkt = Packet(src, dst, proto, n)
                pkt.icmp_type, pkt.icmp_code = icmp_type, icmp_code
                return pkt
    if not buf:
        raise Malformed("empty")
    version = buf[0] >> 4
    if version == 4:
        return _decode4(buf)
    if version == 6:
        return _decode6(buf)
    raise Malformed("ip_version")


def _decode4(buf: bytes) -> Packet:
    if len(buf) < 20:
        raise Malformed("ipv4_truncated")
    vihl, _tos, total, _id, frag, _ttl, proto, _csum, src, dst = _IP4.unpack_from(buf)
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or total < ihl or len(buf) < ihl:
        raise Malformed("ipv4_header_length")
    end = min(total, len(buf))
    pkt = Packet(src, dst, proto, end)
    if total > end:
        pkt.truncated = True
    if frag & 0x3FFF:  # MF or an offset: a fragment
        pkt.fragment = True
        if not frag & 0x1FFF:  # only the first one carries the L4 header
            _decode_first_fragment(pkt, buf, ihl, end)
        return pkt
    _decode_l4(pkt, buf, ihl, end)
    return pkt


def _decode6(buf: bytes) -> Packet:
    if len(buf) < 40:
        raise Malformed("ipv6_truncated")
    plen = (buf[4] << 8) | buf[5]
    end = min(40 + plen, len(buf))
    pkt = Packet(buf[8:24], buf[24:40], 0, end)
    if 40 + plen > end:
        pkt.truncated = True
    nxt, off = buf[6], 40
    for _ in range(_MAX_EXT):
        if nxt == _V6_FRAG:
            if off + 8 > end:
                raise Malformed("ipv6_ext_truncated")
            pkt.fragment = True
            if ((buf[off + 2] << 8) | buf[off + 3]) & 0xFFF8:
                pkt.proto = buf[off]
                return pkt  # non-first fragment
            nxt, off = buf[off], off + 8
        elif nxt in _V6_EXT:
            if off + 8 > end:
                raise Malformed("ipv6_ext_truncated")
            size = (buf[off + 1] + 2) * 4 if nxt == 51 else (buf[off + 1] + 1) * 8
            nxt, off = buf[off], off + size
        else:
            break
    else:
        raise Malformed("ipv6_ext_chain")
    if off > end:
        raise Malformed("ipv6_ext_truncated")
    pkt.proto = nxt
    if pkt.fragment:
        _decode_first_fragment(pkt, buf, off, end)
    else:
        _decode_l4(pkt, buf, off, end)
    return pkt


def _decode_first_fragment(pkt: Packet, buf: bytes, off: int, end: int) -> None:
    """Ports of a first fragment, when it holds them. A tiny first fragment is
    no reason to call the packet malformed: the engine judges the datagram."""
    try:
        _decode_l4(pkt, buf, off, end)
    except Malformed:
        pkt.payload = b""


def _decode_l4(pkt: Packet, buf: bytes, off: int, end: int) -> None:
    proto = pkt.proto
    if proto == PROTO_TCP:
        if end - off < 20:
            raise Malformed("tcp_truncated")
        pkt.sport, pkt.dport, pkt.seq, _ack, doff, pkt.flags = _TCP.unpack_from(buf, off)
        hlen = (doff >> 4) * 4
        if hlen < 20 or off + hlen > end:
            raise Malformed("tcp_header_length")
        if hlen > 20 and pkt.flags & SYN:
            _check_options(buf, off + 20, off + hlen)
        pkt.payload = buf[off + hlen:end]
    elif proto == PROTO_UDP:
        if end - off < 8:
            raise Malformed("udp_truncated")
        pkt.sport, pkt.dport, ulen = _UDP.unpack_from(buf, off)
        if ulen < 8 or off + ulen > end:  # the kernel drops these too
            raise Malformed("udp_length")
        pkt.payload = buf[off + 8:off + ulen]
    elif proto in (PROTO_ICMP, PROTO_ICMP6):
        if end - off < 4:
            raise Malformed("icmp_truncated")
        pkt.icmp_type, pkt.icmp_code = buf[off], buf[off + 1]


def _check_options(buf: bytes, off: int, end: int) -> None:
    """Walk TCP options (SYNs only: the options that matter, MSS and window
    scale, ride on SYNs, and walking them on every segment costs)."""
    while off < end:
        kind = buf[off]
        if kind == 0:
            return
        if kind == 1:
            off += 1
            continue
        if off + 1 >= end or buf[off + 1] < 2 or off + buf[off + 1] > end:
            raise Malformed("tcp_options")
        off += buf[off + 1]
