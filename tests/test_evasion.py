"""Evasion resistance: the engine must judge what the host will see.

IP fragments (ips_inline/packet/defrag.py, reached from Engine.process), TCP stream
overlaps and out-of-order bounds (Flow.reassemble), truncated packets,
chunked request bodies, and the encodings attackers hide behind, with benign
look-alikes that must stay clean. Replay-level checks of the evasion captures
are at the end (their sidecars are also checked by test_replay.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Harness
from packets import ATTACKER, ATTACKER6, CLIENT, VICTIM, VICTIM6, Conn, http_get, http_post, tcp
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.packet import Raw
from scapy.utils import checksum

from ips_inline.config import PAYLOAD_DETECTORS, Config, ConfigError, from_dict
from ips_inline.engine import REASONS
from ips_inline.http.stream import END, HttpError, HttpStream
from ips_inline.packet import defrag as dfg
from ips_inline.packet.decode import decode
from ips_inline.packet.defrag import COMPLETE, DROPPED, HELD, Defrag
from ips_inline.packet.flows import (
    PENDING_SEGMENTS,
    TAIL_BYTES,
    TAIL_MIN,
    Flow,
    StreamConflict,
    StreamMemory,
    StreamOverflow,
)
from ips_inline.replay import replay

REPO = Path(__file__).resolve().parent.parent
SQLI = http_get("/item?id=1%27%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--")
BENIGN_GET = http_get("/search?q=union+station&page=" + "2" * 150)


def count(h: Harness, verdict: str, reason: str) -> int:
    return h.engine.stats.verdicts[REASONS.index((verdict, reason))]


# -- fragment builders -------------------------------------------------------------------
def split4(raw: bytes, pieces: list[tuple[int, int]], ident: int = 0x4242,
           replace: dict[int, bytes] | None = None) -> list[bytes]:
    """IPv4 fragments of `raw` covering (offset, length) pieces of its payload;
    `replace` swaps in other bytes for the piece at that index."""
    ip = IP(raw)
    body = bytes(ip.payload)
    out = []
    for i, (off, size) in enumerate(pieces):
        data = (replace or {}).get(i, body[off:off + size])
        last = off + size >= len(body)
        out.append(bytes(IP(src=ip.src, dst=ip.dst, id=ident, proto=ip.proto, ttl=64,
                            flags=0 if last else "MF", frag=off // 8) / Raw(data)))
    return out


def split6(raw: bytes, pieces: list[tuple[int, int]], ident: int = 0x777, ext: bool = True,
           replace: dict[int, bytes] | None = None) -> list[bytes]:
    """IPv6 fragments (after hop-by-hop and destination options when `ext`)."""
    ip = IPv6(raw)
    body = bytes(ip.payload)
    out = []
    for i, (off, size) in enumerate(pieces):
        data = (replace or {}).get(i, body[off:off + size])
        head = IPv6(src=ip.src, dst=ip.dst, hlim=64)
        if ext:
            head = head / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        frag = IPv6ExtHdrFragment(nh=ip.nh, offset=off // 8, m=int(off + size < len(body)),
                                  id=ident)
        out.append(bytes(head / frag / Raw(data)))
    return out


def even(total: int, size: int) -> list[tuple[int, int]]:
    return [(off, min(size, total - off)) for off in range(0, total, size)]


def payload_len(raw: bytes) -> int:
    return len(IP(raw).payload) if raw[0] >> 4 == 4 else len(IPv6(raw).payload)


def feed_all(d: Defrag, frags: list[bytes], now: float = 1.0) -> list[tuple[int, bytes]]:
    return [d.feed(f, now) for f in frags]


# -- defrag, unit --------------------------------------------------------------------------
SEGMENT4 = tcp(flags="PA", seq=77, payload=SQLI)
SEGMENT6 = tcp(src=ATTACKER6, dst=VICTIM6, flags="PA", seq=77, payload=SQLI)


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_ipv4_reassembly_orders(order: str) -> None:
    frags = split4(SEGMENT4, even(payload_len(SEGMENT4), 24))
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(frags)
    results = feed_all(Defrag(), frags)
    assert [s for s, _ in results[:-1]] == [HELD] * (len(frags) - 1)
    status, datagram = results[-1]
    assert status == COMPLETE
    assert datagram[20:] == SEGMENT4[20:] and IP(datagram).flags == 0 and IP(datagram).frag == 0
    assert checksum(datagram[:20]) == 0  # header checksum recomputed


def test_ipv4_identical_overlaps_reassemble() -> None:
    total = payload_len(SEGMENT4)
    frags = split4(SEGMENT4, [(0, 40), (16, 48), (8, 16), (56, total - 56)])
    status, datagram = feed_all(Defrag(), frags)[-1]
    assert status == COMPLETE and decode(datagram).payload == SQLI


def test_ipv4_conflicting_overlap_drops_the_datagram() -> None:
    total = payload_len(SEGMENT4)
    d = Defrag()
    frags = split4(SEGMENT4, [(0, 40), (16, 24), (40, total - 40)],
                   replace={1: b"X" * 24})
    assert [s for s, _ in feed_all(d, frags)] == [HELD, DROPPED, DROPPED]
    assert d.counts["overlap_conflict"] == 1 and d.counts["dropped_late"] == 1
    assert len(d) == 0 and d.total == 0


@pytest.mark.parametrize("ext", [True, False])
@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_ipv6_reassembly_with_extension_headers(order: str, ext: bool) -> None:
    frags = split6(SEGMENT6, even(payload_len(SEGMENT6), 32), ext=ext)
    if order == "reversed":
        frags.reverse()
    status, datagram = feed_all(Defrag(), frags)[-1]
    assert status == COMPLETE
    pkt = IPv6(datagram)
    assert IPv6ExtHdrFragment not in pkt and bytes(pkt[TCP]) == bytes(IPv6(SEGMENT6)[TCP])
    assert (IPv6ExtHdrDestOpt in pkt) == ext and pkt.plen == len(datagram) - 40


def test_ipv6_conflicting_overlap_and_atomic_fragment() -> None:
    d = Defrag()
    frags = split6(SEGMENT6, [(0, 64), (32, 32), (64, payload_len(SEGMENT6) - 64)],
                   replace={1: b"Y" * 32})
    assert [s for s, _ in feed_all(d, frags)] == [HELD, DROPPED, DROPPED]
    atomic = split6(SEGMENT6, [(0, payload_len(SEGMENT6))])  # offset 0, M=0 (RFC 6946)
    status, datagram = d.feed(atomic[0], 2.0)
    assert status == COMPLETE and decode(datagram).payload == SQLI


def test_duplicate_first_fragment_keeps_the_first_header() -> None:
    """Linux ignores a fragment inside one it holds: the first copy wins."""
    total = payload_len(SEGMENT4)
    frags = split4(SEGMENT4, [(0, 24), (24, total - 24)])
    dup = bytearray(frags[0])
    dup[8] = 7  # another TTL: same data, other header
    dup[10:12] = b"\0\0"
    status, datagram = feed_all(Defrag(), [frags[0], bytes(dup), frags[1]])[-1]
    assert status == COMPLETE and datagram[8] == 64


@pytest.mark.parametrize("bad", ["odd_length", "past_65535", "two_ends", "data_past_end",
                                 "too_many"])
def test_invalid_fragments_drop_the_datagram(bad: str) -> None:
    def frag(off: int, data: bytes, more: bool = True) -> bytes:
        return bytes(IP(src=ATTACKER, dst=VICTIM, id=9, proto=6, ttl=64,
                        flags="MF" if more else 0, frag=off // 8) / Raw(data))

    frags = {
        "odd_length": [frag(0, b"a" * 13)],
        "past_65535": [frag(65528, b"a" * 16, more=False)],
        "two_ends": [frag(16, b"b" * 8, more=False), frag(16, b"b" * 16, more=False)],
        "data_past_end": [frag(16, b"b" * 8, more=False), frag(16, b"b" * 16)],
        "too_many": [frag(0, b"a" * 8)] * (dfg.MAX_FRAGMENTS + 1),
    }[bad]
    d = Defrag()
    statuses = [s for s, _ in feed_all(d, frags)]
    assert statuses[-1] == DROPPED and len(d) == 0
    assert d.counts["bad_fragment"] + d.counts["too_big"] + d.counts["too_many"] == 1


def test_defrag_bounds_evict_and_count() -> None:
    d = Defrag(max_datagrams=4, max_total=1000, timeout=30.0)
    first = [split4(tcp(sport=40000 + i, flags="PA", payload=b"z" * 200), [(0, 96)], ident=i)[0]
             for i in range(6)]
    assert [s for s, _ in feed_all(d, first)] == [HELD] * 6
    assert len(d) <= 4 and d.total <= 1000 and d.counts["evicted"] >= 2
    # an evicted datagram stays dropped: its remaining pieces cannot complete it on the host
    rest = split4(tcp(sport=40000, flags="PA", payload=b"z" * 200), [(96, 124)], ident=0)[0]
    assert d.feed(rest, 2.0)[0] == DROPPED


def test_defrag_timeout_in_engine_time() -> None:
    d = Defrag(timeout=30.0)
    total = payload_len(SEGMENT4)
    head, tail = split4(SEGMENT4, [(0, 24), (24, total - 24)])
    assert d.feed(head, 100.0)[0] == HELD
    d.sweep(131.0)
    assert len(d) == 0 and d.total == 0 and d.counts["timed_out"] == 1
    assert d.feed(tail, 131.5)[0] == HELD  # the host forgot the head too: a new datagram


def test_nested_ipv6_fragment_is_dropped() -> None:
    inner = bytes(IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=5)) + b"q" * 16
    outer = IPv6(src=ATTACKER6, dst=VICTIM6) / IPv6ExtHdrFragment(nh=44, m=1, id=6)
    frags = [bytes(outer / Raw(inner[:16])),
             bytes(IPv6(src=ATTACKER6, dst=VICTIM6)
                   / IPv6ExtHdrFragment(nh=44, offset=2, m=0, id=6) / Raw(inner[16:]))]
    d = Defrag()
    assert [s for s, _ in feed_all(d, frags)] == [HELD, DROPPED]
    assert d.counts["bad_fragment"] == 1


# -- fragments through the engine ----------------------------------------------------------
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_fragmented_sqli_blocked_by_the_completing_fragment(family: int, order: str) -> None:
    h = Harness()
    conn = Conn() if family == 4 else Conn(src=ATTACKER6, dst=VICTIM6)
    h.feed(*conn.handshake())
    segment = conn.send(SQLI)
    split = split4 if family == 4 else split6
    frags = split(segment, even(payload_len(segment), 16))
    if order == "reversed":
        frags.reverse()
    verdicts = h.feed(*frags)
    assert all(verdicts[:-1]) and verdicts[-1] is False
    assert h.alert_detectors() == ["sqli"]
    assert count(h, "accept", "fragment_held") == len(frags) - 1
    assert h.engine.stats.packets == 3 + len(frags)  # every fragment has one verdict
    # the attacker re-sends the dropped last piece: it stays dropped
    assert h.feed(frags[-1]) == [False]


def test_tiny_first_fragment_is_not_malformed() -> None:
    """8 bytes of TCP header in the first fragment: judged as a datagram."""
    h = Harness()
    conn = Conn()
    h.feed(*conn.handshake())
    segment = conn.send(SQLI)
    verdicts = h.feed(*split4(segment, [(0, 8), (8, payload_len(segment) - 8)]))
    assert verdicts == [True, False] and sum(h.engine.stats.malformed.values()) == 0


def test_benign_fragments_pass_and_conflicts_drop() -> None:
    h = Harness()
    conn = Conn(src=CLIENT)
    h.feed(*conn.handshake())
    segment = conn.send(BENIGN_GET)
    assert all(h.feed(*split4(segment, even(payload_len(segment), 64))))
    segment = conn.send(BENIGN_GET)
    total = payload_len(segment)
    frags = split4(segment, [(0, 64), (32, 32), (64, total - 64)], ident=0x99,
                   replace={1: b"A" * 32})
    assert h.feed(*frags) == [True, False, False]
    assert count(h, "drop", "fragment") == 2
    assert h.engine.defrag.counts["overlap_conflict"] == 1
    assert not h.alerts()


def test_unfragmented_traffic_never_reaches_defrag(harness) -> None:
    conn = Conn(src=CLIENT)
    harness.feed(*conn.handshake(), conn.send(BENIGN_GET))
    assert harness.engine.defrag.counts["fragments"] == 0


# -- TCP stream ----------------------------------------------------------------------------
def segment(conn: Conn, seq: int, data: bytes) -> bytes:
    return tcp(conn.src, conn.dst, conn.sport, conn.dport, "PA", seq, 1, data)


def test_conflicting_retransmission_is_dropped_and_counted(harness) -> None:
    conn = Conn()
    harness.feed(*conn.handshake())
    start = conn.seq
    first = http_get("/search?q=hello+world+and+more")
    assert harness.feed(conn.send(first[:20])) == [True]
    # the "same" bytes again, now carrying an attack (e.g. the first copy had a bad checksum)
    evil = b"GET /search?q=1'+OR+'1'='1 HTTP/1.1\r\nHost: victim\r\n\r\n"
    assert harness.feed(segment(conn, start, evil)) == [False]
    assert count(harness, "drop", "stream_conflict") == 1
    # the honest rest completes the honest request: clean
    assert harness.feed(conn.send(first[20:])) == [True]
    assert not harness.alerts()


def test_identical_retransmission_is_trimmed_not_inspected_twice(harness) -> None:
    conn = Conn(src=CLIENT)
    harness.feed(*conn.handshake())
    start = conn.seq
    assert harness.feed(conn.send(BENIGN_GET)) == [True]
    assert harness.feed(segment(conn, start, BENIGN_GET)) == [True]
    assert harness.feed(segment(conn, start + 10, BENIGN_GET[10:30])) == [True]
    flow = next(iter(harness.engine.flows.est.data.values()))
    assert flow.http.requests == 1 and count(harness, "drop", "stream_conflict") == 0


@pytest.mark.parametrize("size", [1, 2, 3])
def test_tiny_segments_join(harness, size: int) -> None:
    conn = Conn()
    harness.feed(*conn.handshake())
    pieces = [SQLI[i:i + size] for i in range(0, len(SQLI), size)]
    verdicts = harness.feed(*[conn.send(p) for p in pieces])
    assert all(verdicts[:-1]) and verdicts[-1] is False  # the completing segment is dropped
    assert harness.alert_detectors() == ["sqli"]


def test_out_of_order_segments_reassemble(harness) -> None:
    conn = Conn()
    harness.feed(*conn.handshake())
    start = conn.seq
    pieces = [(start + i, SQLI[i:i + 40]) for i in range(0, len(SQLI), 40)]
    pieces = pieces[1:] + pieces[:1]  # the first piece arrives last and fills the hole
    verdicts = harness.feed(*[segment(conn, s, d) for s, d in pieces])
    assert all(verdicts[:-1]) and verdicts[-1] is False


def test_held_segments_that_disagree_are_dropped(harness) -> None:
    conn = Conn()
    harness.feed(*conn.handshake())
    start = conn.seq
    held = segment(conn, start + 20, BENIGN_GET[20:60])
    other = segment(conn, start + 40, b"X" * 40)  # overlaps the held one, other bytes
    in_order = segment(conn, start, b"Z" * 30)  # overlaps the held one too, other bytes
    assert harness.feed(held, other, in_order) == [True, False, False]
    assert count(harness, "drop", "stream_conflict") == 2
    assert harness.feed(segment(conn, start, BENIGN_GET)) == [True]
    assert not harness.alerts()


def test_out_of_order_beyond_the_bound_is_dropped_then_recovers(harness) -> None:
    conn = Conn()
    harness.feed(*conn.handshake())
    start = conn.seq
    pieces = [(start + i, SQLI[i:i + 4]) for i in range(0, len(SQLI), 4)]
    ahead = pieces[1:PENDING_SEGMENTS + 2]  # one more than the bound, after a hole
    verdicts = harness.feed(*[segment(conn, s, d) for s, d in ahead])
    assert verdicts == [True] * PENDING_SEGMENTS + [False]
    assert count(harness, "drop", "stream_overflow") == 1
    # the sender retransmits from the hole on, in order: the attack is still caught
    rest = harness.feed(*[segment(conn, s, d) for s, d in pieces])
    assert rest[-1] is False and harness.alert_detectors() == ["sqli"]


def test_flow_stream_memory_is_bounded_and_given_back() -> None:
    mem = StreamMemory(limit=1 << 20)
    flow = Flow(b"a", 1, 0.0, 1000, True, mem)
    seq = 1000
    for _ in range(200):
        assert flow.reassemble(seq, b"x" * 1400)
        seq += 1400
    assert TAIL_BYTES <= len(flow.tail) <= 2 * TAIL_BYTES and mem.used == len(flow.tail)
    flow.reassemble(seq + 5000, b"y" * 100)  # held out of order
    assert mem.used == len(flow.tail) + 100
    flow.release()
    assert mem.used == 0


def test_tails_shrink_once_the_budget_is_spent() -> None:
    mem = StreamMemory(limit=10_000)
    flows = [Flow(b"a", 1, 0.0, 0, True, mem) for _ in range(4)]
    for seq in range(0, 50_000, 1000):
        for flow in flows:
            flow.reassemble(seq, b"x" * 1000)
        # over the budget, each tail keeps at most 2 * TAIL_MIN plus the segment just added
        assert mem.used <= mem.limit + len(flows) * (2 * TAIL_MIN + 1000)
    assert mem.used == sum(len(f.tail) for f in flows)


def test_pending_respects_the_total_budget() -> None:
    flow = Flow(b"a", 1, 0.0, 0, True, StreamMemory(limit=100))
    with pytest.raises(StreamOverflow):
        flow.reassemble(10, b"x" * 200)
    assert flow.pending == {} and flow.next_seq == 0  # nothing changed


def test_conflict_leaves_the_flow_unchanged() -> None:
    flow = Flow(b"a", 1, 0.0, 0, True)
    assert flow.reassemble(0, b"hello world") == b"hello world"
    with pytest.raises(StreamConflict):
        flow.reassemble(6, b"WORLD and more")
    assert flow.next_seq == 11 and bytes(flow.tail) == b"hello world"
    assert flow.reassemble(6, b"world and more") == b" and more"


def test_stream_memory_returns_to_zero_when_flows_go(harness) -> None:
    for i in range(5):
        conn = Conn(src=CLIENT, sport=41000 + i)
        harness.feed(*conn.handshake(), conn.send(BENIGN_GET))
    assert harness.engine.flows.mem.used > 0
    harness.engine.sweep(harness.now + harness.cfg.engine.flow_ttl + 1)
    assert harness.engine.flows.mem.used == 0


# -- truncated packets ---------------------------------------------------------------------
def truncated(raw: bytes, keep: int) -> bytes:
    return raw[:keep]  # the IP header still claims the full length


@pytest.mark.parametrize("policy", ["accept", "drop"])
def test_truncated_packets_counted_and_judged_by_policy(policy: str) -> None:
    cfg = from_dict({"engine": {"truncated_policy": policy}})
    h = Harness(cfg)
    conn = Conn(src=CLIENT)
    h.feed(*conn.handshake())
    big = http_post("/upload", "a=" + "b" * 5000)
    verdicts = h.feed(truncated(conn.send(big), 4016))
    assert h.engine.stats.truncated == 1
    assert verdicts == [False]
    assert count(h, "drop", "truncated") == (policy == "drop")
    if policy == "accept":  # inspected as far as copied: the stream lost bytes, fail closed
        assert h.engine.stats.stream_errors["truncated"] == 1
        assert h.feed(conn.send(b"more")) == [False]


def test_truncated_stream_is_given_up_when_stream_errors_are_accepted() -> None:
    h = Harness(from_dict({"engine": {"stream_error_policy": "accept"}}))
    conn = Conn(src=CLIENT)
    h.feed(*conn.handshake())
    assert h.feed(truncated(conn.send(http_post("/upload", "a=" + "b" * 5000)), 4016)) == [True]
    flow = next(iter(h.engine.flows.est.data.values()))
    assert flow.http.dead


def test_truncated_policy_is_validated() -> None:
    with pytest.raises(ConfigError):
        from_dict({"engine": {"truncated_policy": "maybe"}})


# -- chunked bodies ------------------------------------------------------------------------
def chunked(body_parts: list[bytes], head_extra: str = "", ext: str = "") -> bytes:
    head = ("POST /login HTTP/1.1\r\nHost: victim\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n{head_extra}\r\n").encode()
    chunks = b"".join(f"{len(p):x}{ext}\r\n".encode() + p + b"\r\n" for p in body_parts)
    return head + chunks + b"0\r\n\r\n"


ATTACK_BODY = [b"user=admin&pass=1%27+UNI", b"ON+SELECT+password+FROM+users--+-"]


@pytest.mark.parametrize("variant", ["plain", "extension", "byte_by_byte", "leading_zeros"])
def test_attack_in_chunked_body_is_found(harness, variant: str) -> None:
    request = chunked(ATTACK_BODY, "", ";x=1" if variant == "extension" else "")
    if variant == "leading_zeros":  # servers accept 0000000018 as 0x18
        request = request.replace(b"\r\n18\r\n", b"\r\n0000000018\r\n")
    conn = Conn()
    harness.feed(*conn.handshake())
    if variant == "byte_by_byte":
        verdicts = harness.feed(*[conn.send(request[i:i + 1]) for i in range(len(request))])
    else:
        verdicts = harness.feed(conn.send(request))
    assert verdicts[-1] is False and all(verdicts[:-1])
    assert harness.alert_detectors() == ["sqli"]


def test_chunked_with_content_length_fails_closed(harness) -> None:
    """Both framings at once: the request smuggling shape servers reject or misread."""
    conn = Conn()
    harness.feed(*conn.handshake())
    request = chunked(ATTACK_BODY, "Content-Length: 5\r\n")
    assert harness.feed(conn.send(request)) == [False]
    assert harness.engine.stats.stream_errors["length_and_chunked"] == 1
    assert harness.feed(conn.send(http_get("/next"))) == [False]  # the connection stays blocked


def ends(units: list) -> list:
    return [request for kind, request, _parts in units if kind == END]


def test_chunked_then_keep_alive_request() -> None:
    stream = HttpStream(16384, 16384)
    data = chunked([b"a=1", b"&b=2"]) + http_get("/next")
    requests = ends(stream.feed(data))
    assert [bytes(r.body) for r in requests] == [b"a=1&b=2", b""] and not stream.dead
    assert requests[1].target == "/next"


def test_chunked_body_past_the_buffer_is_still_parsed() -> None:
    stream = HttpStream(16384, 64)
    units = stream.feed(chunked([b"a" * 50, b"b" * 50]) + http_get("/next"))
    first, second = ends(units)
    assert first.body_cut and len(first.body) == 64 and first.length == 100
    assert second.target == "/next" and not stream.dead


@pytest.mark.parametrize(("tail", "reason"), [(b"zz-not-hex\r\n", "chunk_size"),
                                              (b"1;" + b"e" * 5000, "chunk_line"),
                                              (b"3\r\nabcX\r\n", "chunk_framing"),
                                              (b"1" * 20 + b"\r\n", "chunk_size")])
def test_chunked_framing_errors_raise(tail: bytes, reason: str) -> None:
    stream = HttpStream(16384, 64)
    head = chunked([])[:-5]
    units = stream.feed(head + tail)
    assert [kind for kind, _r, _p in units] == ["head"]  # the head was still inspected
    assert isinstance(stream.error, HttpError) and stream.error.reason == reason
    assert stream.feed(http_get("/more")) == []  # nothing is followed past the error


# -- encodings -----------------------------------------------------------------------------
OVERLONG = {".": "%c0%ae", "/": "%c0%af", "<": "%c0%bc", ">": "%c0%be", "'": "%c0%a7",
            ";": "%c0%bb", " ": "%c0%a0", "=": "%c0%bd", "|": "%c1%bc"}


def raw_enc(s: str) -> str:
    return (s.replace("%", "%25").replace(" ", "%20").replace("\t", "%09")
            .replace("\n", "%0a").replace("#", "%23").replace("&", "%26").replace("+", "%2b"))


ENCODINGS = {
    "raw": raw_enc,
    "percent": lambda s: quote(s, safe=""),
    "double_percent": lambda s: quote(quote(s, safe=""), safe=""),
    "percent_u": lambda s: "".join(c if c.isalnum() else f"%u{ord(c):04X}" for c in s),
    "overlong_utf8": lambda s: "".join(OVERLONG.get(c, quote(c, safe="")) for c in s),
    "plus": lambda s: quote(s, safe="").replace("%20", "+"),
}
ATTACKS = {
    "sqli": ["1' UNION SELECT username,password FROM users--", "1' OR '1'='1",
             "1'/**/UNION/**/SELECT/**/password/**/FROM/**/users--",
             "1' /*!50000UNION*/ /*!50000SELECT*/ password FROM users--",
             "1' UnIoN SeLeCt password FrOm users--", "1'\tUNION\tSELECT\tpassword\tFROM\tusers--",
             "1'\nUNION\nSELECT password FROM users--", "1' AND SLEEP(5)-- -"],
    "xss": ["<script>alert(1)</script>", "<ScRiPt>alert(1)</sCrIpT>",
            "&#x3c;script&#x3e;alert(1)&#x3c;/script&#x3e;",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<img\tsrc=x\tonerror=alert(1)>", "<img\nsrc=x\nonerror=alert(1)>",
            '<a href="jav&#x09;ascript:alert(1)">x</a>', '<a href="JaVa\nScRiPt:alert(1)">x</a>'],
    "path_traversal": ["../../../etc/passwd", "..\\..\\windows\\win.ini", "....//....//etc/passwd",
                       "/..;/..;/etc/passwd", "..\\/..\\/ETC/PASSWD"],
    "cmd_injection": ["127.0.0.1;cat /etc/passwd", "127.0.0.1;\tcat\t/etc/passwd",
                      "127.0.0.1\ncat /etc/passwd", "x|id", "x&&id", "x`id`", "$(whoami)",
                      "x;/bin/cat /etc/passwd"],
}


def only(detector: str) -> Harness:
    cfg = Config()
    for name in PAYLOAD_DETECTORS:
        cfg.detectors[name].enabled = name == detector
    return Harness(cfg)


def send_value(h: Harness, value: str, where: str, src: str = ATTACKER) -> list[bool]:
    conn = Conn(src=src)
    request = {"query": lambda: http_get("/p?q=" + value),
               "form": lambda: http_post("/p", "q=" + value),
               "cookie": lambda: http_get("/p", f"Cookie: sid=1; q={value}\r\n"),
               "chunked": lambda: chunked([f"q={value}".encode()])}[where]()
    return h.feed(*conn.handshake(), conn.send(request))


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("detector", list(ATTACKS))
def test_encoded_attacks_are_detected(detector: str, encoding: str) -> None:
    missed = []
    for attack in ATTACKS[detector]:
        for where in ("query", "form", "chunked"):
            h = only(detector)
            send_value(h, ENCODINGS[encoding](attack), where)
            if h.alert_detectors() != [detector]:
                missed.append((attack, where))
    assert not missed


@pytest.mark.parametrize("detector", ["sqli", "xss", "cmd_injection"])
def test_attacks_in_cookies_are_detected(detector: str) -> None:
    h = only(detector)
    send_value(h, quote(ATTACKS[detector][0], safe=""), "cookie")
    assert h.alert_detectors() == [detector]


# Values a real user sends that look a little like attacks: every detector stays quiet.
BENIGN_VALUES = [
    "O'Brien", "union station", "select the best option", "cats & dogs", "rock & roll; 2 tickets",
    "what is 1+1", "o.brien@example.com", "Tom &amp; Jerry", "I &lt;3 this", "&#x263a; smile",
    "Dear team,\nping me when the cat food arrives.\nThanks", "line one\nid card lost",
    "javascript tutorial: intro", "x > 3 and y < 4", "50% off", "C:\\Users\\Public\\docs",
    "a -- b", "/* not a comment */ hello", "The Who - Who's Next (1971)", "SELECT * is slow?",
    "AT&T", "time: 12:30", "https://example.com/a?b=c&d=e", "docs/readme.txt", "1.2.3",
    "%u is a printf format", "100%25 sure", "she said \"hi\"", "email me; I'm around",
    "and/or", "x=1 y=2", "<b>bold</b> text", "tabs\tand\tspaces", "java script: not a url",
]


@pytest.mark.parametrize("where", ["query", "form", "chunked", "cookie"])
def test_benign_look_alikes_stay_clean(where: str) -> None:
    noisy = []
    for value in BENIGN_VALUES:
        h = Harness()
        if not all(send_value(h, quote(value, safe=""), where, src=CLIENT)) or h.alerts():
            noisy.append((value, h.alert_detectors()))
    assert not noisy


# -- replay of the evasion captures -------------------------------------------------------
EVASION_CAPTURES = ["frag_v4", "frag_conflict", "frag_v6", "tcp_evasion"]


@pytest.mark.parametrize("name", EVASION_CAPTURES)
def test_evasion_capture_replays_with_defrag_counters(name: str, tmp_path: Path) -> None:
    out = tmp_path / "eve.json"
    with out.open("w") as fh:
        record = replay([str(REPO / "pcaps" / f"{name}.pcap")], Config(), fh, None)
    stats = record["stats"]
    assert stats["accepted"] + stats["dropped"] == stats["packets"]
    exp = json.loads((REPO / "pcaps" / f"{name}.expected.json").read_text())
    assert stats["packets"] == exp["packets"]
    frags = stats["defrag"]
    if name.startswith("frag"):
        assert frags["fragments"] > 0 and frags["held"] > 0
        assert stats["metrics"]["packets"]["accept"]["fragment_held"] == frags["held"]
    if name == "frag_conflict":
        assert frags["overlap_conflict"] >= 1
        assert stats["metrics"]["packets"]["drop"]["fragment"] >= 1
    if name == "tcp_evasion":
        assert stats["metrics"]["packets"]["drop"]["stream_conflict"] >= 1
