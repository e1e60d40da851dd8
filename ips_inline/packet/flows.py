"""TCP connection state as the host sees it, and in-order reassembly of the
initiator's byte stream.

What the engine believes about a connection is what the kernel proved:
- a connection counts as handshake-proven only when the kernel marked one of
  its packets ASSURED (packet/conntrack.py): a valid final ACK, which a forger
  who never sees the SYN-ACK cannot produce;
- tables: half-open (`syn`), proven (`est`) and picked up mid-stream without
  proof (`picked`, smaller). Forged or unproven segments only ever land in
  `syn` or `picked`, so they cannot evict a proven connection;
- a SYN the kernel calls NEW on a known 4-tuple is a new connection (the old
  one was closed): the old state, a block included, is forgotten; a SYN on a
  live connection (the host answers it with a challenge ACK) changes nothing;
- an RST ends the engine's connection only where it ends the host's: its
  sequence number must be the next expected one exactly (RFC 5961, as Linux);
- a connection forgotten while it was blocked or in the middle of a request
  (evicted from a full table, or idle past its timeout while the host kept it)
  is remembered in `lost` (bounded): when it comes back, the engine cannot
  follow it, and the engine fails closed for it instead of picking it up.

Reassembly keeps the engine's view of the stream equal to the host's: bytes
that overlap what was already accepted (or is held out of order) must be the
same bytes, else the segment is dropped (StreamConflict) - the host keeps the
first copy, and a second, different copy is evasion bait. To compare, each
connection keeps the last TAIL_BYTES of its accepted stream. Out-of-order
segments beyond the pending bounds are dropped (StreamOverflow): the sender
retransmits them, while accepting them unseen would open a hole in our view.
Every buffer a connection holds (tail, pending segments, HTTP buffers) is
charged to one StreamMemory budget per engine.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar

from . import conntrack as ct
from .decode import ACK, RST, SYN, Packet
from .tables import BoundedTable

if TYPE_CHECKING:
    from ..http.request import HttpRequest
    from ..http.stream import HttpStream

FlowKey = tuple[bytes, int, bytes, int]

# Stream memory bounds: per connection, and for all connections together.
PENDING_SEGMENTS = 16  # out-of-order segments held per connection
PENDING_BYTES = 65536  # out-of-order bytes held per connection
TAIL_BYTES = 65536  # accepted bytes kept (at least; at most twice) to check overlaps
TAIL_MIN = 1024  # ... for tails trimmed once the total budget is spent
STREAM_BUDGET = 64 << 20  # tails, pending segments and HTTP buffers of all connections
PICKED_SHARE = 16  # the mid-stream pickup table holds max_flows / PICKED_SHARE
_SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000


class StreamError(Exception):
    """The segment must be dropped; `reason` is the engine's verdict reason."""

    reason: ClassVar[str] = "stream_conflict"


class StreamConflict(StreamError):
    """Overlapping bytes differ from those accepted or held before."""


class StreamOverflow(StreamError):
    """Out of order beyond the pending bounds, or the memory budget is spent."""

    reason: ClassVar[str] = "stream_overflow"


class StreamMemory:
    """Bytes held in tails, pending segments and HTTP buffers by every
    connection of a table (one budget, so a flood of half-sent requests
    cannot grow memory past it)."""

    __slots__ = ("used", "limit", "refused")

    def __init__(self, limit: int = STREAM_BUDGET) -> None:
        self.used = 0
        self.limit = limit
        self.refused = 0  # buffer growths refused because the budget was spent

    def room(self, grow: int) -> bool:
        if self.used + grow <= self.limit:
            return True
        self.refused += 1
        return False


class Flow:
    __slots__ = ("seen", "start", "src", "sport", "established", "handshake", "blocked",
                 "bypassed", "packets", "next_seq", "pending", "http", "request", "tail", "mem",
                 "picked", "lost", "fresh", "dport")

    def __init__(self, src: bytes, sport: int, now: float, next_seq: int, handshake: bool,
                 mem: StreamMemory | None = None) -> None:
        self.seen = self.start = now
        self.src = src  # the initiator: the side whose requests we inspect
        self.sport = sport
        self.dport = 0  # the responder's port
        self.established = False  # past the handshake (or picked up)
        self.handshake = handshake  # the kernel proved the handshake (ASSURED)
        self.blocked = ""  # why every later segment is dropped ("" = not blocked)
        self.bypassed = 0  # 0, or the bypass verdict the connection got (engine.py)
        self.packets = 0  # packets that reached the end of inspection
        self.next_seq = next_seq
        self.pending: dict[int, bytes] | None = None
        self.http: HttpStream | None = None  # set once the stream carries data
        self.request: HttpRequest | None = None  # the request the payload detectors are looking at
        self.tail: bytearray | None = None  # the last accepted bytes of the stream
        self.mem = mem if mem is not None else StreamMemory()
        self.picked = False  # picked up mid-stream: where its stream stands is unknown
        self.lost = False  # forgotten before while blocked or mid-request
        self.fresh = False  # a new connection whose handshake was just proven (once)

    def from_initiator(self, pkt: Packet) -> bool:
        return pkt.src == self.src and pkt.sport == self.sport

    def unfinished(self) -> bool:
        """Blocked, or in the middle of a request: forgetting it would let its
        rest through uninspected."""
        return bool(self.blocked) or (self.http is not None and self.http.mid_request())

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
        """Give back the stream memory (the flow leaves its table, or its
        stream is no longer inspected)."""
        held = len(self.tail or b"") + sum(map(len, (self.pending or {}).values()))
        self.mem.used -= held
        self.tail = self.pending = None
        if self.http is not None:
            self.http.release()
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
                or not self.mem.room(grow)):
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
                                               on_drop=self._forgotten)
        self.picked = BoundedTable[FlowKey, Flow]("picked_up", max(max_flows // PICKED_SHARE, 1),
                                                  flow_ttl, on_drop=self._forgotten)
        self.lost: OrderedDict[FlowKey, None] = OrderedDict()
        self.max_lost = max_flows
        self.lost_count = 0  # connections forgotten unfinished (blocked or mid-request)
        self.mem = StreamMemory()

    def half_open(self, src: bytes) -> int:
        return self.half_open_by_src.get(src, 0)

    def find(self, pkt: Packet, now: float) -> Flow | None:
        """The tracked connection of a segment, either direction, any table."""
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        rev = (pkt.dst, pkt.dport, pkt.src, pkt.sport)
        for table in (self.est, self.picked):
            flow = table.get(key, now) or table.get(rev, now)
            if flow is not None:
                return flow
        return None

    def track(self, pkt: Packet, now: float) -> Flow | None:
        """Update connection state for one TCP segment (not INVALID: the
        engine drops those first); return its flow."""
        flow = self.find(pkt, now)
        if flow is None:
            flow = self._untracked(pkt, now)
        elif pkt.flags & (SYN | ACK) == SYN:
            if pkt.ct == ct.NEW:  # the kernel sees a new connection on this 4-tuple
                self._close(flow, pkt)
                flow = self._untracked(pkt, now)
            # else: a SYN on a live connection; the host answers it with a challenge ACK
        else:
            self._update(flow, pkt, now)
        if flow is not None:
            flow.seen = now
        return flow

    def _update(self, flow: Flow, pkt: Packet, now: float) -> None:
        if pkt.ct == ct.ASSURED and not flow.handshake:
            flow.handshake = True  # the kernel saw the handshake complete
            key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
            if self.picked.data.get(key) is flow:
                self.picked.pop(key)
                self.est.put(key, flow)
        if pkt.flags & RST and self._rst_closes(flow, pkt):
            self._close(flow, pkt)

    @staticmethod
    def _rst_closes(flow: Flow, pkt: Packet) -> bool:
        if not flow.from_initiator(pkt):
            return True  # the responder's own reset (seen in replay only)
        return pkt.seq == flow.next_seq or not flow.established

    def _close(self, flow: Flow, pkt: Packet) -> None:
        for key in ((pkt.src, pkt.sport, pkt.dst, pkt.dport),
                    (pkt.dst, pkt.dport, pkt.src, pkt.sport)):
            for table in (self.est, self.picked):
                if table.data.get(key) is flow:
                    table.pop(key)
                    flow.release()
                    self.lost.pop(key, None)
                    return

    def _untracked(self, pkt: Packet, now: float) -> Flow | None:
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        flags = pkt.flags
        if flags & (SYN | ACK) == SYN:
            flow = self.syn.get(key, now)
            if flow is None or pkt.ct == ct.NEW and flow.next_seq != (pkt.seq + 1) & _SEQ_MASK:
                if flow is not None:
                    self._remove_syn(key)
                flow = Flow(pkt.src, pkt.sport, now, (pkt.seq + 1) & _SEQ_MASK, False, self.mem)
                flow.dport = pkt.dport
                self.syn.put(key, flow)
                self.half_open_by_src[pkt.src] = self.half_open(pkt.src) + 1
                self.lost.pop(key, None)  # a new connection starts afresh
            return flow
        flow = self.syn.get(key, now)
        if flow is not None:
            return self._handshake(key, flow, pkt)
        reverse = self.syn.get((pkt.dst, pkt.dport, pkt.src, pkt.sport), now)
        if reverse is not None:
            return reverse  # the responder's SYN-ACK (replay)
        if not pkt.payload or flags & (RST | SYN) or not flags & ACK or pkt.ct == ct.REPLY:
            return None  # nothing worth a new entry
        return self._pick_up(key, pkt, now)

    def _handshake(self, key: FlowKey, flow: Flow, pkt: Packet) -> Flow:
        flags = pkt.flags
        if flags & RST:
            self._remove_syn(key)
            return flow
        if flags & (SYN | ACK) == ACK and pkt.ct == ct.ASSURED:
            # The initiator's ACK completes the handshake, and the kernel says it
            # is the valid one: only now does the connection take a proven slot.
            self._remove_syn(key)
            flow.established = flow.handshake = flow.fresh = True
            self.est.put(key, flow)
        return flow

    def _pick_up(self, key: FlowKey, pkt: Packet, now: float) -> Flow:
        """Data on a connection the engine does not know (a restart, an
        expiry, an eviction): followed from here on, in the pickup table
        unless the kernel vouches for it."""
        flow = Flow(pkt.src, pkt.sport, now, pkt.seq, pkt.ct == ct.ASSURED, self.mem)
        flow.established = flow.picked = True
        flow.dport = pkt.dport
        if key in self.lost:
            flow.lost = True
            del self.lost[key]
        (self.est if flow.handshake else self.picked).put(key, flow)
        return flow

    def _forgotten(self, key: FlowKey, flow: Flow) -> None:
        """A connection left a table other than by closing (evicted, expired)."""
        if flow.unfinished():
            self.lost_count += 1
            self.lost[key] = None
            self.lost.move_to_end(key)
            while len(self.lost) > self.max_lost:
                self.lost.popitem(last=False)
        flow.release()

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
        if flow.http is not None:
            flow.release()

    def sweep(self, now: float) -> None:
        self.syn.sweep(now)
        self.est.sweep(now)
        self.picked.sweep(now)

    def tables(self) -> list[BoundedTable]:
        return [self.syn, self.est, self.picked]

    def __len__(self) -> int:
        return len(self.syn) + len(self.est) + len(self.picked)
