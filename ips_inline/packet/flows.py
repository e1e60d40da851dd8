"""TCP connection state: half-open and established tables, per-source
half-open counts, and in-order reassembly of the initiator's byte stream.

Half-open connections live in their own short-lived table so a SYN flood from
random sources churns only that table and never evicts established flows.

Reassembly keeps the engine's view of the stream equal to the host's: bytes
that overlap what was already accepted (or is held out of order) must be the
same bytes, else the segment is dropped (StreamConflict) - the host keeps the
first copy, and a second, different copy is evasion bait (a first copy the
host never took, e.g. a bad checksum, then other bytes). To compare, each
connection keeps the last TAIL_BYTES of its accepted stream. Out-of-order
segments beyond the pending bounds are dropped (StreamOverflow): the sender
retransmits them, while accepting them unseen would open a hole in our view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decode import ACK, FIN, RST, SYN, Packet
from .tables import BoundedTable

if TYPE_CHECKING:
    from ..http.stream import HttpStream

FlowKey = tuple[bytes, int, bytes, int]

# Stream memory bounds: per connection, and for all connections together.
PENDING_SEGMENTS = 16  # out-of-order segments held per connection
PENDING_BYTES = 65536  # out-of-order bytes held per connection
TAIL_BYTES = 65536  # accepted bytes kept (at least; at most twice) to check overlaps
TAIL_MIN = 1024  # ... for tails trimmed once the total budget is spent
STREAM_BUDGET = 64 << 20  # tails + pending bytes of all connections
_SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000


class StreamError(Exception):
    """The segment must be dropped; `reason` is the engine's verdict reason."""

    reason = "stream_conflict"


class StreamConflict(StreamError):
    """Overlapping bytes differ from those accepted or held before."""


class StreamOverflow(StreamError):
    """Out of order beyond the pending bounds."""

    reason = "stream_overflow"


class StreamMemory:
    """Bytes held in tails and pending segments by every connection of a table."""

    __slots__ = ("used", "limit")

    def __init__(self, limit: int = STREAM_BUDGET) -> None:
        self.used = 0
        self.limit = limit


class Flow:
    __slots__ = ("seen", "src", "established", "handshake", "blocked", "bypassed", "packets",
                 "next_seq", "pending", "http", "request", "tail", "mem", "start")

    def __init__(self, src: bytes, now: float, next_seq: int, handshake: bool,
                 mem: StreamMemory | None = None) -> None:
        self.seen = now
        self.start = now  # first packet: with the 5-tuple, the EVE flow_id
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
        self.tail: bytearray | None = None  # the last accepted bytes of the stream
        self.mem = mem if mem is not None else StreamMemory()

    def reassemble(self, seq: int, data: bytes) -> bytes:
        """Bytes that became contiguous with this segment (b"" if none).
        Identical retransmitted bytes are trimmed so nothing is inspected
        twice; raises StreamError (nothing changed) if it must be dropped."""
        delta = (seq - self.next_seq) & _SEQ_MASK
        if delta >= _HALF:  # starts before next_seq: retransmission or overlap
            overlap = (self.next_seq - seq) & _SEQ_MASK
            self._check_tail(overlap, data)
            if overlap >= len(data):
                return b""
            data = data[overlap:]
        elif delta:  # a hole before it: hold it (bounded) until the hole fills
            self._hold(seq, data)
            return b""
        if self.pending:
            self._check_pending(self.next_seq, data)
        self.next_seq = (self.next_seq + len(data)) & _SEQ_MASK
        if self.pending:
            data += self._drain()
        self._keep(data)
        return data

    def release(self) -> None:
        """Give back the stream memory (the flow leaves its table)."""
        held = len(self.tail or b"") + sum(map(len, (self.pending or {}).values()))
        self.mem.used -= held
        self.tail = self.pending = None
        self.mem = StreamMemory()  # whatever it still does (an RST's data) is its own

    def _check_tail(self, back: int, data: bytes) -> None:
        """`data` starts `back` bytes before next_seq: compare the part the tail
        still holds (older bytes were taken by the host long ago)."""
        tail = self.tail or b""
        n = min(back, len(data))
        skip = max(back - len(tail), 0)  # leading bytes older than the tail
        if n > skip:
            start = len(tail) - back + skip
            if data[skip:n] != tail[start:start + n - skip]:
                raise StreamConflict

    def _check_pending(self, seq: int, data: bytes) -> None:
        assert self.pending is not None
        size = len(data)
        for start, held in self.pending.items():
            rel = ((start - seq + _HALF) & _SEQ_MASK) - _HALF  # signed offset of `held`
            lo, hi = max(rel, 0), min(size, rel + len(held))
            if lo < hi and data[lo:hi] != held[lo - rel:hi - rel]:
                raise StreamConflict

    def _hold(self, seq: int, data: bytes) -> None:
        if self.pending is None:
            self.pending = {}
        pending = self.pending
        self._check_pending(seq, data)
        old = pending.get(seq)
        if old is not None and len(old) >= len(data):
            return  # a duplicate of what is held
        grow = len(data) - len(old or b"")
        if (old is None and len(pending) >= PENDING_SEGMENTS
                or sum(map(len, pending.values())) + grow > PENDING_BYTES
                or self.mem.used + grow > self.mem.limit):
            raise StreamOverflow
        pending[seq] = data
        self.mem.used += grow

    def _drain(self) -> bytes:
        out = b""
        pending = self.pending
        assert pending is not None
        while pending:
            seq = min(pending, key=lambda s: (s - self.next_seq) & _SEQ_MASK)
            delta = (seq - self.next_seq) & _SEQ_MASK
            if 0 < delta < _HALF:
                break
            chunk = pending.pop(seq)
            self.mem.used -= len(chunk)
            skip = (self.next_seq - seq) & _SEQ_MASK
            if skip < len(chunk):
                out += chunk[skip:]
                self.next_seq = (self.next_seq + len(chunk) - skip) & _SEQ_MASK
        return out

    def _keep(self, data: bytes) -> None:
        """Append accepted bytes to the tail. It holds between cap and 2 * cap
        bytes: trimming only when twice the cap keeps the copying amortised."""
        if not data:
            return
        tail = self.tail
        if tail is None:
            tail = self.tail = bytearray()
        before = len(tail)
        tail += data
        mem = self.mem
        cap = TAIL_BYTES if mem.used < mem.limit else TAIL_MIN
        if len(tail) > 2 * cap:
            del tail[:len(tail) - cap]
        mem.used += len(tail) - before


class FlowTable:
    def __init__(self, max_flows: int, flow_ttl: float, half_open_ttl: float) -> None:
        self.half_open_by_src: dict[bytes, int] = {}
        self.syn = BoundedTable[FlowKey, Flow]("half_open", max_flows, half_open_ttl,
                                               on_drop=self._syn_dropped)
        self.est = BoundedTable[FlowKey, Flow]("flows", max_flows, flow_ttl,
                                               on_drop=lambda _key, flow: flow.release())
        self.mem = StreamMemory()

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
            gone = self.est.pop(key) or self.est.pop((pkt.dst, pkt.dport, pkt.src, pkt.sport))
            if gone is not None:
                gone.release()
        if flow is not None:
            flow.seen = now
        return flow

    def _track_handshake(self, key: FlowKey, pkt: Packet, now: float) -> Flow | None:
        flags = pkt.flags
        if flags & (SYN | ACK) == SYN:
            flow = self.syn.get(key, now)
            if flow is None:
                flow = Flow(pkt.src, now, (pkt.seq + 1) & _SEQ_MASK, True, self.mem)
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
        flow = Flow(pkt.src, now, pkt.seq, False, self.mem)
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
