"""IP reassembly (IPv4 and IPv6) in bounded memory, so the engine inspects the
datagram the host will build, not its pieces.

Where it runs: `Engine.process` hands it every packet the decoder marks as a
fragment (one attribute check keeps it off the path of everything else). In
replay that is every fragment of a capture; live, IPv4 never arrives in
pieces (the kernel reassembles before LOCAL_IN), IPv6 does whenever no rule in
the namespace uses conntrack (nf_defrag_ipv6 is then not registered).

Verdicts, as the host needs every piece: fragments are held (accepted) until
one completes its datagram; that one carries the datagram's verdict, so a
dropped datagram never completes on the host. Fragments whose overlapping
bytes disagree, or that break the rules (non-last piece not a multiple of 8,
past 65535 bytes, a second end, too many pieces) drop the whole datagram;
identical overlaps are fine. A dropped or evicted datagram's key is remembered
for `timeout` seconds so a re-sent last fragment cannot complete it on the
host uninspected (fail closed). Datagrams that time out are forgotten: the
host's own timer (IPv4 30 s, IPv6 60 s) is no longer than ours.
"""

from __future__ import annotations

from collections import OrderedDict
from struct import Struct

# Bounds and timeout (engine time). 65535 is the most an IP datagram can hold.
MAX_DATAGRAMS = 4096  # datagrams in flight; the oldest is evicted
MAX_DATAGRAM_BYTES = 65535  # reassembled size
MAX_FRAGMENTS = 256  # pieces per datagram (a legit 64 KiB datagram at MTU 576: ~120)
MAX_TOTAL_BYTES = 8 << 20  # held bytes over all datagrams; the oldest are evicted
TIMEOUT = 60.0  # seconds (Linux: IPv4 30, IPv6 60)

COMPLETE, HELD, DROPPED = 0, 1, 2
# Counter names (stats record / tests).
EVENTS = ("fragments", "reassembled", "held", "overlap_conflict", "bad_fragment", "too_big",
          "too_many", "evicted", "timed_out", "dropped_late")

_V6_EXT = frozenset((0, 43, 60, 51, 135, 139, 140))  # as in decode.py
_V6_FRAG = 44
_IP4 = Struct("!BBHHHBBH4s4s")
_U16 = Struct("!H")

Key = tuple


class _Datagram:
    __slots__ = ("first_seen", "pieces", "size", "end", "count", "head", "nh_pos", "nxt")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.pieces: list[tuple[int, bytes]] = []  # disjoint (offset, data)
        self.size = 0  # bytes held (== bytes covered: pieces are disjoint)
        self.end = -1  # datagram length once the last piece is seen
        self.count = 0  # fragments received
        self.head = b""  # the first piece's header(s), for the rebuilt datagram
        self.nh_pos = 0  # IPv6: where the header before the fragment header keeps "next"
        self.nxt = 0  # IPv6: the fragment header's next header (from the first piece)


class _Bad(Exception):
    """The fragment spoils its datagram; args[0] is the counter name."""


class Defrag:
    """Feed it fragments; it answers HELD, DROPPED, or COMPLETE with the datagram."""

    def __init__(self, max_datagrams: int = MAX_DATAGRAMS, max_total: int = MAX_TOTAL_BYTES,
                 timeout: float = TIMEOUT) -> None:
        self.max_datagrams = max_datagrams
        self.max_total = max_total
        self.timeout = timeout
        # OrderedDicts: taking the oldest with next(iter()) is O(1) there, while
        # a plain dict walks the dead slots earlier deletions left (see tables.py).
        self.flight: OrderedDict[Key, _Datagram] = OrderedDict()  # oldest first
        self.banned: OrderedDict[Key, float] = OrderedDict()  # dropped datagram -> until when
        self.total = 0
        self.counts = dict.fromkeys(EVENTS, 0)
        self.completed: Key | None = None  # key of the datagram last returned

    def __len__(self) -> int:
        return len(self.flight)

    def feed(self, buf: bytes, now: float) -> tuple[int, bytes]:
        """One fragment (raw L3 bytes) -> (status, datagram or b"")."""
        self.counts["fragments"] += 1
        self.completed = None
        try:
            key, offset, more, data, frag = _parse(buf)
        except _Bad as exc:  # cannot even key it: drop just this piece
            self.counts[exc.args[0]] += 1
            return DROPPED, b""
        if offset == 0 and not more:  # IPv6 atomic fragment (RFC 6946): on its own
            return COMPLETE, _rebuild6(frag, data)
        if key in self.banned:
            if now < self.banned[key]:
                self.counts["dropped_late"] += 1
                return DROPPED, b""
            del self.banned[key]
        try:
            return self._add(key, offset, more, data, frag, now)
        except _Bad as exc:
            self.counts[exc.args[0]] += 1
            self._ban(key, now)
            return DROPPED, b""

    def condemn(self, now: float) -> None:
        """The datagram just returned was dropped: its late pieces are dropped too."""
        if self.completed is not None:
            self._ban(self.completed, now)

    def sweep(self, now: float) -> None:
        stale = [k for k, d in self.flight.items() if now - d.first_seen > self.timeout]
        for key in stale:
            self._forget(key)
        self.counts["timed_out"] += len(stale)
        self.banned = OrderedDict((k, t) for k, t in self.banned.items() if t > now)

    # -- internals ---------------------------------------------------------------
    def _add(self, key: Key, offset: int, more: bool, data: bytes, frag: tuple,
             now: float) -> tuple[int, bytes]:
        dgram = self.flight.get(key)
        if dgram is not None and now - dgram.first_seen > self.timeout:
            self._forget(key)
            self.counts["timed_out"] += 1
            dgram = None
        if dgram is None:
            dgram = self._new(key, now)
        dgram.count += 1
        if dgram.count > MAX_FRAGMENTS:
            raise _Bad("too_many")
        _check_bounds(dgram, offset, more, data)
        added = _insert(dgram, offset, data)
        if offset == 0 and not dgram.head:  # a duplicate first piece: the first wins (Linux)
            dgram.head, dgram.nh_pos, dgram.nxt = frag
        self.total += added
        if dgram.end >= 0 and dgram.size == dgram.end:
            return self._complete(key, dgram)
        self._make_room(key, now)
        self.counts["held"] += 1
        return HELD, b""

    def _new(self, key: Key, now: float) -> _Datagram:
        if len(self.flight) >= self.max_datagrams:
            self._evict(next(iter(self.flight)), now)
        dgram = self.flight[key] = _Datagram(now)
        return dgram

    def _make_room(self, keep: Key, now: float) -> None:
        while self.total > self.max_total:
            victim = next((k for k in self.flight if k != keep), None)
            if victim is None:
                raise _Bad("too_big")  # this datagram alone exceeds the budget
            self._evict(victim, now)

    def _evict(self, key: Key, now: float) -> None:
        self._forget(key)
        self._ban(key, now)
        self.counts["evicted"] += 1

    def _forget(self, key: Key) -> None:
        dgram = self.flight.pop(key, None)
        if dgram is not None:
            self.total -= dgram.size

    def _ban(self, key: Key, now: float) -> None:
        self._forget(key)
        if key not in self.banned and len(self.banned) >= self.max_datagrams:
            del self.banned[next(iter(self.banned))]
        self.banned[key] = now + self.timeout

    def _complete(self, key: Key, dgram: _Datagram) -> tuple[int, bytes]:
        self._forget(key)
        payload = b"".join(d for _o, d in sorted(dgram.pieces))
        if len(dgram.head) + len(payload) - (0 if len(key) == 4 else 40) > MAX_DATAGRAM_BYTES:
            raise _Bad("too_big")  # its length field cannot hold it: the host discards it
        if len(key) == 4:  # IPv4: (src, dst, proto, id)
            out = _rebuild4(dgram.head, payload)
        else:
            out = _rebuild6((dgram.head, dgram.nh_pos, dgram.nxt), payload)
            if _find_frag6(out) is not None:  # a fragment inside a fragment: bait
                raise _Bad("bad_fragment")
        self.completed = key
        self.counts["reassembled"] += 1
        return COMPLETE, out


def _check_bounds(dgram: _Datagram, offset: int, more: bool, data: bytes) -> None:
    end = offset + len(data)
    if end > MAX_DATAGRAM_BYTES:
        raise _Bad("too_big")
    if more:
        if len(data) & 7 or not data:  # RFC 8200 / RFC 791: non-last pieces are 8n bytes
            raise _Bad("bad_fragment")
        if dgram.end >= 0 and end > dgram.end:
            raise _Bad("bad_fragment")
    else:
        if dgram.end >= 0 and end != dgram.end:  # a second, different end
            raise _Bad("bad_fragment")
        if any(o + len(d) > end for o, d in dgram.pieces):
            raise _Bad("bad_fragment")
        dgram.end = end


def _insert(dgram: _Datagram, offset: int, data: bytes) -> int:
    """Store the bytes of `data` not held yet; overlapping bytes must agree."""
    end = offset + len(data)
    gaps: list[tuple[int, bytes]] = []
    pos = offset
    for start, held in sorted(dgram.pieces):
        stop = start + len(held)
        if stop <= offset or start >= end:
            continue
        lo, hi = max(offset, start), min(end, stop)
        if data[lo - offset:hi - offset] != held[lo - start:hi - start]:
            raise _Bad("overlap_conflict")
        if start > pos:
            gaps.append((pos, data[pos - offset:start - offset]))
        pos = max(pos, stop)
    if pos < end:
        gaps.append((pos, data[pos - offset:]))
    added = sum(len(d) for _o, d in gaps)
    dgram.pieces += gaps
    dgram.size += added
    return added


# -- parsing and rebuilding ------------------------------------------------------------
def _parse(buf: bytes) -> tuple[Key, int, bool, bytes, tuple]:
    """(key, offset, more fragments, data, (head, nh_pos, nxt)) of one fragment."""
    if buf[0] >> 4 == 4:
        _v, _tos, total, ident, frag, _ttl, proto, _c, src, dst = _IP4.unpack_from(buf)
        ihl = (buf[0] & 0x0F) * 4
        data = buf[ihl:min(total, len(buf))]
        return (src, dst, proto, ident), (frag & 0x1FFF) * 8, bool(frag & 0x2000), data, \
            (buf[:ihl], 0, 0)
    found = _find_frag6(buf)
    if found is None:
        raise _Bad("bad_fragment")
    off, nh_pos = found
    end = min(40 + _U16.unpack_from(buf, 4)[0], len(buf))
    if off + 8 > end:
        raise _Bad("bad_fragment")
    field = _U16.unpack_from(buf, off + 2)[0]
    key = (buf[8:24], buf[24:40], buf[off + 4:off + 8])
    return key, field & 0xFFF8, bool(field & 1), buf[off + 8:end], (buf[:off], nh_pos, buf[off])


def _find_frag6(buf: bytes) -> tuple[int, int] | None:
    """Offset of the IPv6 fragment header and of the byte naming it, or None."""
    nxt, off, nh_pos = buf[6], 40, 6
    while off + 8 <= len(buf):  # each header is 8 bytes at least: the walk ends
        if nxt == _V6_FRAG:
            return off, nh_pos
        if nxt not in _V6_EXT or off + 8 > len(buf):
            return None
        size = (buf[off + 1] + 2) * 4 if nxt == 51 else (buf[off + 1] + 1) * 8
        nxt, nh_pos, off = buf[off], off, off + size
    return None


def _rebuild4(head: bytes, payload: bytes) -> bytes:
    hdr = bytearray(head)
    hdr[2:4] = _U16.pack(len(head) + len(payload))
    hdr[6:8] = b"\0\0"  # no MF, offset 0
    hdr[10:12] = b"\0\0"
    hdr[10:12] = _U16.pack(_checksum(hdr))
    return bytes(hdr) + payload


def _rebuild6(frag: tuple, payload: bytes) -> bytes:
    """The unfragmentable part, its last "next header" pointed past the fragment
    header, payload length fixed: what the host's stack goes on to parse."""
    head, nh_pos, nxt = frag
    hdr = bytearray(head)
    hdr[nh_pos] = nxt
    hdr[4:6] = _U16.pack(len(head) - 40 + len(payload))
    return bytes(hdr) + payload


def _checksum(hdr: bytes | bytearray) -> int:
    total = sum(_U16.unpack_from(hdr, i)[0] for i in range(0, len(hdr) - 1, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
