"""The kernel's view of connections, as the engine receives it.

The engine sees INPUT only, so it cannot tell by itself a reply from a probe,
or a handshake a forger guessed from one the host completed. The kernel's
connection tracking can. Live, the rules write each packet's conntrack state
into a few bits of the packet mark before the queue (enforce/iptables.py:
`ct_rules`); the daemon hands the mark to the engine. Offline, replay has no
kernel: `CtInfer` derives the same states from both directions of the
capture, as conntrack would, with two differences: no TCP window tracking,
and leniency where a capture lacks context (it often starts in the middle of
connections): only a flag combination no stack sends is INVALID; a packet of
a connection the capture never showed opening is NEW (a pickup), a SYN-ACK
without its SYN a REPLY.

States (the mark holds state << shift):
  NEW        opens a connection, or nothing was seen in reply yet
  EST        original direction of a tracked connection, replies seen
  ASSURED    original direction of a TCP connection whose handshake the kernel
             saw completed (a valid final ACK): a forger cannot produce it
  REPLY      reply direction of a tracked connection (answers to the host)
  RELATED    related to a tracked connection (ICMP errors, FTP data)
  INVALID    the kernel could not match it (bad flag combination, out of the
             TCP window, bad checksum, FIN/RST without a connection)
  UNTRACKED  exempted from tracking (raw table NOTRACK)
  UNKNOWN    no information: the engine infers it (replay)
"""

from __future__ import annotations

from collections import OrderedDict

from .decode import ACK, FIN, PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PSH, RST, SYN, Packet

UNKNOWN, NEW, EST, ASSURED, REPLY, RELATED, INVALID, UNTRACKED = range(8)
NAMES = ("unknown", "new", "established", "assured", "reply", "related", "invalid", "untracked")
# States in which a packet may open or probe something: floods and scans count these.
PROBES = frozenset((UNKNOWN, NEW, INVALID, UNTRACKED))
MARK_SHIFT = 24  # default live.ct_mark: 0x07000000

# TCP flag combinations conntrack accepts (nf_conntrack_proto_tcp.c,
# tcp_valid_flags[]), after masking ECE, CWR and PSH. Anything else is INVALID.
_URG = 0x20
_VALID_FLAGS = frozenset((SYN, SYN | _URG, SYN | ACK, RST, RST | ACK, FIN | ACK,
                          FIN | ACK | _URG, ACK, ACK | _URG))
_FLAG_MASK = 0x3F & ~PSH
_ECHO_REQUEST = {PROTO_ICMP: 8, PROTO_ICMP6: 128}
_ECHO_REPLY = {PROTO_ICMP: 0, PROTO_ICMP6: 129}
_SEQ = 0xFFFFFFFF
MAX_TRACKED = 65536


def from_mark(mark: int, shift: int = MARK_SHIFT) -> int:
    return (mark >> shift) & 7


def valid_tcp_flags(flags: int) -> bool:
    return flags & _FLAG_MASK in _VALID_FLAGS


class _Conn:
    __slots__ = ("orig", "seen", "replied", "assured", "isn", "synack", "sent", "closed")

    def __init__(self, orig: tuple, now: float, isn: int) -> None:
        self.orig = orig  # (src, sport) of the side that opened it
        self.seen = now
        self.replied = False
        self.assured = False
        self.isn = isn  # the opener's SYN sequence number (-1: picked up)
        self.synack = -1  # the responder's SYN-ACK sequence number
        self.sent = 0  # sequence space the responder has used from its SYN-ACK on
        self.closed = False


class CtInfer:
    """Conntrack states for packets that came without one (replay), from both
    directions of the capture. Bounded: the oldest connections are forgotten,
    after which their packets look NEW again (as after a conntrack flush)."""

    def __init__(self, max_tracked: int = MAX_TRACKED, ttl: float = 300.0) -> None:
        self.conns: OrderedDict[tuple, _Conn] = OrderedDict()
        self.max_tracked = max_tracked
        self.ttl = ttl

    def __len__(self) -> int:
        return len(self.conns)

    def classify(self, pkt: Packet, now: float) -> int:
        proto = pkt.proto
        if proto == PROTO_TCP:
            return self._tcp(pkt, now)
        if proto in _ECHO_REQUEST:
            return self._icmp(pkt, now)
        return self._datagram(pkt, now)

    # -- per protocol -------------------------------------------------------------
    def _key(self, pkt: Packet) -> tuple[tuple, bool]:
        """The connection's key, and whether pkt goes from lower to higher end."""
        a, b = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
        return ((pkt.proto, a, b), True) if a <= b else ((pkt.proto, b, a), False)

    def _lookup(self, key: tuple, now: float) -> _Conn | None:
        conn = self.conns.get(key)
        if conn is not None and now - conn.seen > self.ttl:
            del self.conns[key]
            return None
        return conn

    def _add(self, key: tuple, conn: _Conn) -> None:
        self.conns.pop(key, None)
        if len(self.conns) >= self.max_tracked:
            self.conns.popitem(last=False)
        self.conns[key] = conn

    def _tcp(self, pkt: Packet, now: float) -> int:
        flags = pkt.flags
        if not valid_tcp_flags(flags):
            return INVALID
        key, _ = self._key(pkt)
        conn = self._lookup(key, now)
        if flags & (SYN | ACK) == SYN:
            if (conn is None or conn.closed or conn.isn != pkt.seq
                    or (pkt.src, pkt.sport) != conn.orig):
                self._add(key, _Conn((pkt.src, pkt.sport), now, pkt.seq))  # new, or reopened
            else:
                conn.seen = now  # a retransmitted SYN
            return NEW
        if conn is None:
            if flags & (SYN | ACK) == SYN | ACK:  # the capture missed the SYN
                conn = _Conn((pkt.dst, pkt.dport), now, (pkt.ack - 1) & _SEQ)
                self._add(key, conn)
                return self._tcp_reply(conn, pkt)
            self._add(key, _Conn((pkt.src, pkt.sport), now, -1))
            return NEW  # picked up: the capture started after it opened
        conn.seen = now
        if (pkt.src, pkt.sport) != conn.orig:
            return self._tcp_reply(conn, pkt)
        if flags & RST or flags & FIN:
            conn.closed = conn.closed or bool(flags & RST)
        if not conn.assured and conn.synack >= 0 and flags & ACK and not flags & SYN \
                and 0 < (pkt.ack - conn.synack) & _SEQ <= conn.sent:
            conn.assured = True  # a valid final ACK: it acknowledges what the responder sent
        if conn.assured:
            return ASSURED
        return EST if conn.replied else NEW

    @staticmethod
    def _tcp_reply(conn: _Conn, pkt: Packet) -> int:
        flags = pkt.flags
        if flags & (SYN | ACK) == SYN | ACK:
            if conn.isn < 0 or pkt.ack == (conn.isn + 1) & _SEQ:  # answers the SYN
                conn.synack, conn.sent = pkt.seq, 1  # its SYN uses one number
        elif conn.synack >= 0:
            used = ((pkt.seq - conn.synack) & _SEQ) + len(pkt.payload) + (1 if flags & FIN else 0)
            if used < 1 << 30:
                conn.sent = max(conn.sent, used)
        if flags & RST:
            conn.closed = True
        if conn.isn < 0 and flags & ACK and not flags & RST:
            conn.assured = True  # a picked-up connection answered: conntrack assures it
        conn.replied = True
        return REPLY

    def _icmp(self, pkt: Packet, now: float) -> int:
        proto = pkt.proto
        if pkt.icmp_type == _ECHO_REQUEST[proto]:
            key = (proto, pkt.src, pkt.dst)
            conn = self._lookup(key, now)
            if conn is None:
                self._add(key, _Conn((pkt.src, 0), now, -1))
                return NEW
            conn.seen = now
            return EST if conn.replied else NEW
        if pkt.icmp_type == _ECHO_REPLY[proto]:
            conn = self._lookup((proto, pkt.dst, pkt.src), now)
            if conn is not None:
                conn.replied = True
            return REPLY  # (without its request: the capture missed it)
        return RELATED  # errors and the rest: never a probe of ours to count

    def _datagram(self, pkt: Packet, now: float) -> int:
        key, _ = self._key(pkt)
        conn = self._lookup(key, now)
        if conn is None:
            self._add(key, _Conn((pkt.src, pkt.sport), now, -1))
            return NEW
        conn.seen = now
        if (pkt.src, pkt.sport) != conn.orig:
            conn.replied = True
            return REPLY
        return EST if conn.replied else NEW

    def sweep(self, now: float) -> None:
        stale = [k for k, c in self.conns.items() if now - c.seen > self.ttl]
        for key in stale:
            del self.conns[key]
