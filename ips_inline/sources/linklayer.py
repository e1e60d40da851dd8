"""Link layers -> the IP packet inside, by slicing: what the host's INPUT hook would
see once the kernel has removed the framing. Tunnels carried in IP (GRE, VXLAN,
Geneve, IP-in-IP) stay as their outer packet, as on the host.

A stripper returns the IP bytes, None for a frame that carries no IP (ARP, LLDP,
PPP control), or b"" for a frame too short or inconsistent for its own framing:
the engine counts b"" as malformed instead of passing it over as non-IP.
"""

from __future__ import annotations

from collections.abc import Callable

Strip = Callable[[bytes, int], "bytes | None"]  # (frame, length on the wire)

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_IP = frozenset((ETH_IPV4, ETH_IPV6))
_VLAN = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))  # 802.1Q, 802.1ad, old QinQ tags
_MPLS = frozenset((0x8847, 0x8848))
_PPPOE_SESSION, _PBB, _VNTAG, _FABRICPATH = 0x8864, 0x88E7, 0x8926, 0x8903
_LLC = 0  # pseudo ethertype: an 802.2 LLC header follows (802.3 length frames)
_SNAP = b"\xaa\xaa\x03"
_SNAP_ETHER_OUIS = (b"\x00\x00\x00", b"\x00\x00\xf8")  # RFC 1042, 802.1H
_PPP_IP = frozenset((0x21, 0x57))  # IPv4, IPv6
_PPP_MPLS = frozenset((0x281, 0x283))
_MAX_LAYERS = 16  # nested tags, labels and inner frames before a frame counts as malformed

DLT_NULL, DLT_EN10MB, DLT_PPP, DLT_FDDI = 0, 1, 9, 10
DLT_PPP_SERIAL, DLT_PPP_ETHER, DLT_RAW, DLT_C_HDLC = 50, 51, 101, 104
DLT_LOOP, DLT_LINUX_SLL, DLT_NFLOG, DLT_LINUX_SLL2 = 108, 113, 239, 276
RAW_ALIASES = frozenset((12, 14, DLT_RAW, 228, 229))  # BSD/OpenBSD raw, IPv4-, IPv6-only
_NFULA_PAYLOAD = 9


def _u16(buf: bytes, off: int) -> int:
    return (buf[off] << 8) | buf[off + 1]


def payload(etype: int, buf: bytes, off: int) -> bytes | None:
    """The IP packet in buf[off:], the payload of a frame of this ethertype: through
    VLAN/QinQ tags, MPLS labels, PPPoE sessions, LLC/SNAP, PBB, VN-Tag, FabricPath."""
    for _ in range(_MAX_LAYERS):
        if etype in _IP:
            return buf[off:]
        if etype in _VLAN:
            hdr, at = 4, 2  # TCI, then the next ethertype
        elif etype in _MPLS:
            return _mpls(buf, off)
        elif etype == _PPPOE_SESSION:
            return _ppp(buf, off + 6, False)  # version/type, code, session, length
        elif etype <= 1500:  # 802.3 length field (or _LLC): an LLC header follows
            if buf[off:off + 3] != _SNAP or buf[off + 3:off + 6] not in _SNAP_ETHER_OUIS:
                return b"" if len(buf) < off + 6 else None  # STP, NetBIOS, CDP...
            hdr, at = 8, 6
        elif etype == _PBB:
            hdr, at = 18, 16  # I-TAG, then the customer's addresses and ethertype
        elif etype == _VNTAG:
            hdr, at = 6, 4
        elif etype == _FABRICPATH:
            hdr, at = 16, 14  # FTag/TTL, then the inner Ethernet header
        else:
            return None
        if len(buf) < off + hdr:
            return b""
        etype = _u16(buf, off + at)
        off += hdr
    return b""


def _ethernet_at(buf: bytes, off: int) -> bytes | None:
    if len(buf) < off + 14:
        return b""
    return payload(_u16(buf, off + 12), buf, off + 14)


def _mpls(buf: bytes, off: int) -> bytes | None:
    for _ in range(_MAX_LAYERS):
        if len(buf) < off + 4:
            return b""
        bottom = buf[off + 2] & 1
        off += 4
        if bottom:
            break
    else:
        return b""
    if len(buf) <= off:
        return b""
    version = buf[off] >> 4
    if version in (4, 6):
        return buf[off:]
    if version == 0:  # pseudowire control word, then an Ethernet frame (RFC 4448)
        return _ethernet_at(buf, off + 4)
    return None


def _ppp(buf: bytes, off: int, framed: bool = True) -> bytes | None:
    """PPP from its protocol field; `framed` accepts the HDLC-like 0xff 0x03 prefix."""
    if framed and buf[off:off + 2] == b"\xff\x03":
        off += 2
    if len(buf) <= off:
        return b""
    if buf[off] & 1:  # protocol field compression: one byte
        proto, off = buf[off], off + 1
    elif len(buf) < off + 2:
        return b""
    else:
        proto, off = _u16(buf, off), off + 2
    if proto in _PPP_IP:
        return buf[off:]
    if proto in _PPP_MPLS:
        return _mpls(buf, off)
    return None  # LCP, IPCP, CHAP...


def strip_ethernet(buf: bytes, wirelen: int) -> bytes | None:
    if len(buf) < 14:
        return b""
    etype = (buf[12] << 8) | buf[13]
    if etype in _IP:  # the common case, before any call
        return buf[14:]
    return payload(etype, buf, 14)


def strip_sll(buf: bytes, wirelen: int) -> bytes | None:
    if len(buf) < 16:
        return b""
    return _cooked(_u16(buf, 14), buf, 16)


def strip_sll2(buf: bytes, wirelen: int) -> bytes | None:
    if len(buf) < 20:
        return b""
    return _cooked(_u16(buf, 0), buf, 20)


def _cooked(proto: int, buf: bytes, off: int) -> bytes | None:
    """Linux cooked capture: the protocol is an ethertype; below 0x600 it is one of
    Linux's ETH_P_* pseudo protocols, of which only 802.2 (4) can carry IP."""
    if proto >= 0x600:
        return payload(proto, buf, off)
    return payload(_LLC, buf, off) if proto == 4 else None


def strip_null(buf: bytes, wirelen: int) -> bytes | None:
    """BSD loopback: a 4-byte address family in either byte order; the IP version
    says more than the family's many per-OS values for IPv6."""
    if len(buf) <= 4:
        return b""
    return buf[4:] if buf[4] >> 4 in (4, 6) else None


def strip_ppp(buf: bytes, wirelen: int) -> bytes | None:
    return _ppp(buf, 0)


def strip_pppoe(buf: bytes, wirelen: int) -> bytes | None:
    return _ppp(buf, 6, False)


def strip_chdlc(buf: bytes, wirelen: int) -> bytes | None:
    """Cisco HDLC: address (0x0f unicast, 0x8f broadcast), control, an ethertype."""
    if len(buf) < 4:
        return b""
    proto = _u16(buf, 2)
    return payload(proto, buf, 4) if proto in _IP or proto in _MPLS else None


def strip_fddi(buf: bytes, wirelen: int) -> bytes | None:
    """FDDI: frame control and two addresses (13 bytes), then LLC/SNAP."""
    if len(buf) < 13:
        return b""
    return payload(_LLC, buf, 13)


def strip_raw(buf: bytes, wirelen: int) -> bytes | None:
    return buf


def nflog_stripper(little: bool) -> Strip:
    """NFLOG: a 4-byte header (family, version, resource id), then attributes whose
    length and type fields are in the byte order of the host that wrote the file,
    each padded to 4 bytes; the NFULA_PAYLOAD attribute holds the IP packet."""
    order = "little" if little else "big"

    def strip(buf: bytes, wirelen: int) -> bytes | None:
        if len(buf) < 4 or buf[1] != 0:
            return b""  # too short, or an NFLOG version we do not know
        off = 4
        while off + 4 <= len(buf):
            length = int.from_bytes(buf[off:off + 2], order)
            kind = int.from_bytes(buf[off + 2:off + 4], order) & 0x7FFF  # bit 15: nested
            end = off + length
            if length < 4 or end > wirelen:
                return b""  # a length that runs past the packet: malformed, not a crash
            if kind == _NFULA_PAYLOAD:
                return buf[off + 4:end]  # under a snap length, what was captured of it
            off = (end + 3) & ~3
        return b"" if off < len(buf) else None  # no payload: a log message without packet

    return strip


_STRIPPERS: dict[int, Strip] = {
    DLT_EN10MB: strip_ethernet, DLT_LINUX_SLL: strip_sll, DLT_LINUX_SLL2: strip_sll2,
    DLT_NULL: strip_null, DLT_LOOP: strip_null, DLT_PPP: strip_ppp,
    DLT_PPP_SERIAL: strip_ppp, DLT_PPP_ETHER: strip_pppoe, DLT_C_HDLC: strip_chdlc,
    DLT_FDDI: strip_fddi, **dict.fromkeys(RAW_ALIASES, strip_raw),
}
_NFLOG = {True: nflog_stripper(True), False: nflog_stripper(False)}


def stripper(linktype: int, little: bool) -> Strip | None:
    """The stripper of a link type, or None when it is not one we read."""
    if linktype == DLT_NFLOG:
        return _NFLOG[little]
    return _STRIPPERS.get(linktype)
