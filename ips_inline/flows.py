"""TCP connection state: half-open and established tables, per-source
half-open counts, and in-order reassembly of the initiator's byte stream.

Half-open connections live in their own short-lived table so a SYN flood from
random sources churns only that table and never evicts established flows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decode import ACK, FIN, RST, SYN, Packet
from .tables import BoundedTable

if TYPE_CHECKING:
    from .http import HttpStream

FlowKey = tuple[bytes, int, bytes, int]

_MAX_PENDING = 16  # out-of-order segments held per connection
_SEQ_MASK = 0xFFFFFFFF


class Flow:
    __slots__ = ("seen", "src", "established", "handshake", "blocked", "bypassed", "packets",
                 "next_seq", "pending", "http", "request")

    def __init__(self, src: bytes, now: float, next_seq: int, handshake: bool) -> None:
        self.seen = now
        self.src = src  # the initiator: the side whose requests we inspect
        self.established = False
        self.handshake = handshake  # a full handshake was seen (not picked up mid-stream)
        self.blocked = False  # an attack was found: every later segment is dropped
        self.bypassed = False  # judged clean for good: the kernel stops queueing it
        self.packets = 0  # packets that reached the end of inspection
        self.next_seq = next_seq
        self.pending: dict[int, bytes] | None = None
        self.http: HttpStream | None = None  # set once the stream looks like HTTP
        self.request = None  # the request the payload detectors are looking at

    def reassemble(self, seq: int, data: bytes) -> bytes:
        """Bytes that became contiguous with this segment (b"" if none).
        Retransmitted bytes are trimmed so nothing is inspected twice."""
        delta = (seq - self.next_seq) & _SEQ_MASK
        if delta >= 0x80000000:  # starts before next_seq: retransmission or overlap
            overlap = (self.next_seq - seq) & _SEQ_MASK
            if overlap >= len(data):
                return b""
            data = data[overlap:]
        elif delta:  # a hole before it: hold it (bounded) until the hole fills
            if self.pending is None:
                self.pending = {}
            if len(self.pending) < _MAX_PENDING:
                self.pending.setdefault(seq, data)
            return b""
        self.next_seq = (self.next_seq + len(data)) & _SEQ_MASK
        if self.pending:
            data += self._drain()
        return data

    def _drain(self) -> bytes:
        out = b""
        pending = self.pending
        assert pending is not None
        while pending:
            seq = min(pending, key=lambda s: (s - self.next_seq) & _SEQ_MASK)
            delta = (seq - self.next_seq) & _SEQ_MASK
            if 0 < delta < 0x80000000:
                break
            chunk = pending.pop(seq)
            skip = (self.next_seq - seq) & _SEQ_MASK
            if skip < len(chunk):
                out += chunk[skip:]
                self.next_seq = (self.next_seq + len(chunk) - skip) & _SEQ_MASK
        return out


class FlowTable:
    def __init__(self, max_flows: int, flow_ttl: float, half_open_ttl: float) -> None:
        self.half_open_by_src: dict[bytes, int] = {}
        self.syn = BoundedTable[FlowKey, Flow]("half_open", max_flows, half_open_ttl,
                                               on_drop=self._syn_dropped)
        self.est = BoundedTable[FlowKey, Flow]("flows", max_flows, flow_ttl)

    def half_open(self, src: bytes) -> int:
        return self.half_open_by_src.get(src, 0)

    def track(self, pkt: Packet, now: float) -> Flow | None:
        """Update connection state for one TCP segment; return its flow."""
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        flags = pkt.flags
        flow = self.est.get(key, now) or self.est.get((pkt.dst, pkt.dport, pkt.src, pkt.sport), now)
        if flow is None:
            flow = self._track_handshake(key, pkt, now)
        elif flags & RST:
            self.est.pop(key) or self.est.pop((pkt.dst, pkt.dport, pkt.src, pkt.sport))
        if flow is not None:
            flow.seen = now
        return flow

    def _track_handshake(self, key: FlowKey, pkt: Packet, now: float) -> Flow | None:
        flags = pkt.flags
        if flags & (SYN | ACK) == SYN:
            flow = self.syn.get(key, now)
            if flow is None:
                flow = Flow(pkt.src, now, (pkt.seq + 1) & _SEQ_MASK, handshake=True)
                self.syn.put(key, flow)
                self.half_open_by_src[pkt.src] = self.half_open(pkt.src) + 1
            return flow
        flow = self.syn.get(key, now)
        if flow is not None:
            if flags & RST:
                self._remove_syn(key)
                return flow
            if flags & (SYN | ACK) == ACK:  # the initiator's ACK completes the handshake
                self._remove_syn(key)
                flow.established = True
                self.est.put(key, flow)
            return flow
        reverse = self.syn.get((pkt.dst, pkt.dport, pkt.src, pkt.sport), now)
        if reverse is not None or not pkt.payload or flags & (RST | SYN | FIN) or not flags & ACK:
            return reverse  # the responder's SYN-ACK, or nothing worth a new entry
        # Data on a connection we never saw open (e.g. after a restart): pick it up.
        flow = Flow(pkt.src, now, pkt.seq, handshake=False)
        flow.established = True
        self.est.put(key, flow)
        return flow

    def _remove_syn(self, key: FlowKey) -> None:
        flow = self.syn.pop(key)
        if flow is not None:
            self._syn_dropped(key, flow)

    def _syn_dropped(self, key: FlowKey, flow: Flow) -> None:
        count = self.half_open_by_src.get(flow.src, 0) - 1
        if count > 0:
            self.half_open_by_src[flow.src] = count
        else:
            self.half_open_by_src.pop(flow.src, None)

    def sweep(self, now: float) -> None:
        self.syn.sweep(now)
        self.est.sweep(now)

    def __len__(self) -> int:
        return len(self.syn) + len(self.est)
