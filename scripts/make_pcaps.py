#!/usr/bin/env python3
"""Generate the replay test captures in pcaps/ (deterministic: same bytes on every run).

    .venv/bin/python scripts/make_pcaps.py [--out DIR]

Packets are built with scapy; the capture files are written by this script (classic pcap
little/big endian, usec/nsec, and pcapng) so that link types, zero-length records and
timestamps are fully under control. Timestamps start at 2025-01-01T00:00:00Z; every
random choice (ports, ISNs, IP ids) comes from random.Random(capture name).

Addresses: 10.77.0.10 / fd77::10 victim (server), 10.77.0.20 / fd77::20 client,
10.77.0.21 and 10.77.0.22 other benign hosts, 10.77.0.53 DNS resolver,
10.77.0.30 / fd77::30 attacker, fd77::31 second IPv6 attacker.

Each NAME.pcap[ng] gets a sidecar NAME.expected.json (checked by tests/test_replay.py
against the `stats`, `alert` and `ban` records of `ips-inline replay`, default config):

  description     what the capture contains
  format          "pcap" or "pcapng" (informational); linktype: DLT number (informational)
  packets         exact number of records in the file (== stats.packets + stats.non_ip)
  dropped_min     stats.dropped lower bound: packets that must be dropped (attack carriers,
                  everything the attacker sends after its ban point) plus, for requests split
                  over segments, one segment per attack request
  dropped_max     stats.dropped upper bound: the above plus packets that may be dropped (the
                  rest of a blocked connection, victim replies to an already banned source)
  malformed_min   stats.malformed bounds (valid captures: both 0)
  malformed_max
  alerts_min      {detector: n}: at least n alert records from that detector
  alerts_allowed  detectors that may raise alerts at all; an alert from any other detector
                  fails (an empty list means "no alerts at all")
  no_alerts_from  source IPs that must not appear as src_ip of any alert
  bans            {ip: detector}: exactly the set of banned sources (ban records and
                  stats.bans), each banned by that detector
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP
from scapy.packet import Packet, Raw
from scapy.utils import checksum

REPO = Path(__file__).resolve().parent.parent
BASE_NS = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z

VICTIM, CLIENT, CLIENT2, CLIENT3 = "10.77.0.10", "10.77.0.20", "10.77.0.21", "10.77.0.22"
ATTACKER, RESOLVER = "10.77.0.30", "10.77.0.53"
VICTIM6, CLIENT6, ATTACKER6, ATTACKER6B = "fd77::10", "fd77::20", "fd77::30", "fd77::31"

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL = 1, 101, 113
ETH_IP4, ETH_IP6, ETH_ARP = 0x0800, 0x86DD, 0x0806
SNAPLEN = 262144

PASS, MAY, DROP = "pass", "may", "drop"

UA_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
UA_CURL = "curl/8.5.0"


def mac(ip: str) -> bytes:
    """02:77:00:00:00:NN for host .NN / ::NN (same MAC for a host's v4 and v6 address)."""
    last = ip.replace(":", ".").split(".")[-1]
    return bytes([0x02, 0x77, 0, 0, 0, int(last)])


def mac_str(ip: str) -> str:
    return ":".join(f"{b:02x}" for b in mac(ip))


@dataclass
class Record:
    ts_ns: int
    frame: bytes
    tag: str


@dataclass
class Capture:
    name: str  # file name without extension
    description: str
    linktype: int = LINKTYPE_ETHERNET
    fmt: str = "pcap"  # "pcap" or "pcapng"
    nano: bool = False  # pcap: nanosecond timestamps
    big_endian: bool = False  # pcap: written big-endian
    host: str = VICTIM  # SLL: the capturing host (its packets are "outgoing")
    records: list[Record] = field(default_factory=list)
    extra_min: int = 0  # packets of which some (not a known one) must be dropped
    expect: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.name)
        self._ports: set[int] = set()
        self._ipid: dict[str, int] = {}

    @property
    def filename(self) -> str:
        return f"{self.name}.{'pcapng' if self.fmt == 'pcapng' else 'pcap'}"

    def eph_port(self) -> int:
        while True:
            port = self.rng.randint(32768, 60999)
            if port not in self._ports:
                self._ports.add(port)
                return port

    def ipid(self, src: str) -> int:
        if src not in self._ipid:
            self._ipid[src] = self.rng.randint(1, 0xFFFF)
        self._ipid[src] = (self._ipid[src] + 1) & 0xFFFF
        return self._ipid[src]

    def ip(self, src: str, dst: str, **kw) -> Packet:
        if ":" in src:
            return IPv6(src=src, dst=dst, hlim=64, **kw)
        return IP(src=src, dst=dst, id=self.ipid(src), ttl=64, flags="DF", **kw)

    # -- framing -------------------------------------------------------------------------
    def add(self, t: float, pkt: Packet | bytes, tag: str = PASS, *, src: str | None = None,
            dst: str | None = None, ethertype: int | None = None, eth_dst: bytes | None = None,
            pad: bool = True, link: bytes | None = None) -> None:
        """Append an L3 packet at `t` seconds after BASE_NS, framed for this link type.

        `link` is a complete raw frame (used as is); raw L3 bytes need src/dst/ethertype.
        """
        if link is not None:
            frame = link
        else:
            if isinstance(pkt, Packet):
                src, dst = pkt.src, pkt.dst
                ethertype = ETH_IP6 if isinstance(pkt, IPv6) else ETH_IP4
                l3 = bytes(pkt)
            else:
                l3 = pkt
            assert src and dst and ethertype
            frame = self._frame(l3, src, dst, ethertype, eth_dst, pad)
        self.records.append(Record(BASE_NS + round(t * 1e9), frame, tag))

    def _frame(self, l3: bytes, src: str, dst: str, ethertype: int, eth_dst: bytes | None,
               pad: bool) -> bytes:
        if self.linktype == LINKTYPE_RAW:
            return l3
        if self.linktype == LINKTYPE_LINUX_SLL:
            pkttype = 4 if src in (self.host, VICTIM6) else 0  # outgoing / to us
            return struct.pack(">HHH8sH", pkttype, 1, 6, mac(src) + b"\0\0", ethertype) + l3
        frame = (eth_dst or mac(dst)) + mac(src) + struct.pack(">H", ethertype) + l3
        if pad and len(frame) < 60:
            frame += b"\0" * (60 - len(frame))
        return frame

    # -- output --------------------------------------------------------------------------
    def sorted_records(self) -> list[Record]:
        return sorted(self.records, key=lambda r: r.ts_ns)

    def to_bytes(self) -> bytes:
        recs = self.sorted_records()
        if self.fmt == "pcapng":
            return _pcapng(recs, self.linktype)
        return _pcap(recs, self.linktype, self.nano, self.big_endian)

    def sidecar(self) -> dict:
        tags = [r.tag for r in self.records]
        must = tags.count(DROP)
        out = {
            "description": self.description,
            "format": self.fmt,
            "linktype": self.linktype,
            "packets": len(self.records),
            "dropped_min": must + self.extra_min,
            "dropped_max": must + tags.count(MAY),
            "malformed_min": 0,
            "malformed_max": 0,
            "alerts_min": {},
            "alerts_allowed": [],
            "no_alerts_from": [],
            "bans": {},
        }
        out.update(self.expect)
        return out


def _pcap(recs: list[Record], linktype: int, nano: bool, big_endian: bool) -> bytes:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, SNAPLEN, linktype)]
    for r in recs:
        sec, ns = divmod(r.ts_ns, 10**9)
        frac = ns if nano else ns // 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(r.frame), len(r.frame)) + r.frame)
    return b"".join(out)


def _pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def _pcapng_opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _pcapng(recs: list[Record], linktype: int) -> bytes:
    shb_opts = _pcapng_opt(4, b"ips-inline scripts/make_pcaps.py") + _pcapng_opt(0, b"")
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts
    idb_opts = _pcapng_opt(2, b"eth0") + _pcapng_opt(9, b"\x09") + _pcapng_opt(0, b"")
    idb = struct.pack("<HHI", linktype, 0, SNAPLEN) + idb_opts
    out = [_pcapng_block(0x0A0D0D0A, shb), _pcapng_block(1, idb)]
    for r in recs:  # if_tsresol 9: nanoseconds
        hi, lo = r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF
        body = struct.pack("<IIIII", 0, hi, lo, len(r.frame), len(r.frame)) + r.frame
        out.append(_pcapng_block(6, body))
    return b"".join(out)


# -- TCP ---------------------------------------------------------------------------------
class TcpFlow:
    """One TCP connection with consistent seq/ack, timestamps option and windows.

    Packets are tagged with tag_c (client -> server) and tag_s (server -> client); callers
    change the tags as the connection moves past an attack or a ban.
    """

    def __init__(self, cap: Capture, cli: str, srv: str, dport: int, t: float,
                 sport: int | None = None, tag_c: str = PASS, tag_s: str = PASS) -> None:
        self.cap, self.c, self.s, self.dport = cap, cli, srv, dport
        self.sport = sport or cap.eph_port()
        self.t = t
        self.tag_c, self.tag_s = tag_c, tag_s
        self.nxt = {cli: cap.rng.getrandbits(32), srv: cap.rng.getrandbits(32)}
        self.tsbase = {cli: cap.rng.getrandbits(31), srv: cap.rng.getrandbits(31)}
        self.ts_recent = {cli: 0, srv: 0}  # last TSval received by this side

    def _tsval(self, host: str) -> int:
        return (self.tsbase[host] + int(self.t * 1000)) & 0xFFFFFFFF

    def pkt(self, from_client: bool, flags: str, payload: bytes = b"",
            options: list | None = None, tag: str | None = None, dt: float = 0.0) -> None:
        seg = self.segment(from_client, flags, payload, options, dt)
        if tag is None:
            tag = self.tag_c if from_client else self.tag_s
        self.cap.add(self.t, seg, tag)

    def segment(self, from_client: bool, flags: str, payload: bytes = b"",
                options: list | None = None, dt: float = 0.0, seq: int | None = None,
                ) -> Packet:
        """Build the next segment and advance the connection's state, without adding it
        (callers fragment it, reorder it, or add it as is). `seq` overrides the sequence
        number (retransmissions) and then leaves the state alone."""
        self.t += dt
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        tsval = self._tsval(src)
        if options is None:
            options = [("NOP", None), ("NOP", None), ("Timestamp", (tsval, self.ts_recent[src]))]
        window = 64240 if flags == "S" else 65160 if flags == "SA" else 502
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=self.nxt[src] if seq is None else seq,
                  ack=self.nxt[dst] if "A" in flags else 0, window=window, options=options)
        pkt = self.cap.ip(src, dst) / tcp
        if payload:
            pkt = pkt / Raw(payload)
        self.ts_recent[dst] = tsval
        if seq is None:
            self.nxt[src] = (self.nxt[src] + len(payload) + ("S" in flags) + ("F" in flags)) % 2**32
        return pkt

    def handshake(self, rtt: float = 0.0004) -> TcpFlow:
        def syn_opts(host: str, ecr: int) -> list:
            return [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (self._tsval(host), ecr)),
                    ("NOP", None), ("WScale", 7)]

        self.pkt(True, "S", options=syn_opts(self.c, 0))
        self.t += rtt / 2
        self.pkt(False, "SA", options=syn_opts(self.s, self._tsval(self.c)))
        self.ts_recent[self.c] = self._tsval(self.s)
        self.pkt(True, "A", dt=rtt / 2)
        return self

    def send(self, from_client: bool, data: bytes, chunks: list[int] | None = None,
             gap: float = 0.0002, tags: list[str] | None = None) -> None:
        """Send data as one segment per chunk size (default: MSS-sized segments)."""
        pos = 0
        for i, size in enumerate(segment_sizes(len(data), chunks)):
            self.pkt(from_client, "PA", data[pos:pos + size], tag=tags[i] if tags else None,
                     dt=gap if i else 0.0)
            pos += size

    def ack(self, from_client: bool, dt: float = 0.0002) -> None:
        self.pkt(from_client, "A", dt=dt)

    def exchange(self, request: bytes, response: bytes, chunks: list[int] | None = None,
                 req_tags: list[str] | None = None, after: tuple[str, str] | None = None,
                 ) -> None:
        """Request (client), pure ACK, response (server), ACK (client).

        `after` = (tag_c, tag_s) applied from the server's first ACK on.
        """
        self.t += 0.0001
        self.send(True, request, chunks, tags=req_tags)
        if after:
            self.tag_c, self.tag_s = after
        self.ack(False, dt=0.0003)
        self.t += 0.002
        self.send(False, response)
        self.ack(True, dt=0.0003)

    def close(self, dt: float = 0.05) -> None:
        self.pkt(True, "FA", dt=dt)
        self.pkt(False, "FA", dt=0.0003)
        self.pkt(True, "A", dt=0.0003)


def segment_sizes(total: int, chunks: list[int] | None, mss: int = 1448) -> list[int]:
    """Segment sizes for `total` bytes: `chunks` in order (the last one takes the rest),
    or MSS-sized segments."""
    sizes, pos = [], 0
    for i, size in enumerate(chunks or []):
        size = total - pos if i == len(chunks) - 1 else min(size, total - pos)
        if size <= 0:
            break
        sizes.append(size)
        pos += size
    while pos < total:
        sizes.append(min(mss, total - pos))
        pos += sizes[-1]
    return sizes


def http_get(path: str, host: str = "www.ips.test", ua: str = UA_BROWSER,
             extra: str = "", keep_alive: bool = False) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
            f"{extra}Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()


def http_post(path: str, body: str, host: str = "www.ips.test", ua: str = UA_BROWSER,
              ctype: str = "application/x-www-form-urlencoded", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body.encode())}\r\n{extra}"
            f"Connection: close\r\n\r\n{body}").encode()


def http_response(body: str, status: str = "200 OK", ctype: str = "text/html; charset=utf-8",
                  keep_alive: bool = False) -> bytes:
    b = body.encode()
    return (f"HTTP/1.1 {status}\r\nServer: nginx/1.24.0\r\nDate: Wed, 01 Jan 2025 00:00:00 GMT"
            f"\r\nContent-Type: {ctype}\r\nContent-Length: {len(b)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode() + b


COOKIE = "Cookie: session=8f14e45fceea167a; theme=dark; lang=en-US\r\n"
PAGE = "<!doctype html><html><head><title>ok</title></head><body><p>ok</p></body></html>\n"


def benign_http(cap: Capture, t: float, cli: str = CLIENT, srv: str = VICTIM,
                path: str = "/index.html", dport: int = 80) -> TcpFlow:
    f = TcpFlow(cap, cli, srv, dport, t).handshake()
    f.exchange(http_get(path, extra=COOKIE), http_response(PAGE))
    f.close()
    return f


def pings(cap: Capture, t0: float, n: int, src: str = CLIENT, dst: str = VICTIM,
          interval: float = 1.0, ident: int | None = None) -> None:
    """Linux ping: echo requests at `interval`, each answered."""
    ident = cap.rng.randint(1, 0xFFFF) if ident is None else ident
    for i in range(n):
        t = t0 + i * interval
        payload = struct.pack("<Q", 0x0123456789AB + i) + bytes(range(0x10, 0x38))
        if ":" in src:
            req = ICMPv6EchoRequest(id=ident, seq=i + 1, data=payload)
            rep = ICMPv6EchoReply(id=ident, seq=i + 1, data=payload)
        else:
            req = ICMP(type=8, id=ident, seq=i + 1) / Raw(payload)
            rep = ICMP(type=0, id=ident, seq=i + 1) / Raw(payload)
        cap.add(t, cap.ip(src, dst) / req)
        cap.add(t + 0.00031, cap.ip(dst, src) / rep)


# -- attack helpers ----------------------------------------------------------------------
def attack_requests(cap: Capture, requests: list[tuple[bytes, int, list[int] | None, str]],
                    t0: float, ban_after: int = 3, src: str = ATTACKER,
                    dst: str = VICTIM, spacing: float = 2.0) -> None:
    """One connection per attack request, `spacing` s apart (> engine alert_interval).

    requests: (request bytes, port, segment sizes or None, attack marker). Requests before
    the ban: the segments from the one holding the marker on may be dropped and at least
    one of them must be (a single-segment request is exactly "drop"); the rest of the
    connection may be dropped. From the ban (the `ban_after`-th request) on, everything
    the attacker sends must be dropped; the victim's packets may be.
    """
    for i, (req, port, chunks, marker) in enumerate(requests, 1):
        banned_before = i > ban_after
        ban_now = i == ban_after
        f = TcpFlow(cap, src, dst, port, t0 + (i - 1) * spacing,
                    tag_c=DROP if banned_before else PASS, tag_s=MAY if banned_before else PASS)
        f.handshake()
        if banned_before:
            req_tags = None
        else:
            sizes = segment_sizes(len(req), chunks)
            start = req.index(marker.encode())
            req_tags, pos = [], 0
            for size in sizes:
                req_tags.append(PASS if pos + size <= start else MAY)
                pos += size
            if req_tags.count(MAY) == 1:
                req_tags[req_tags.index(MAY)] = DROP
            else:
                cap.extra_min += 1
        after_c = DROP if banned_before or ban_now else MAY
        f.exchange(req, http_response(PAGE), chunks, req_tags=req_tags, after=(after_c, MAY))
        f.close()


def ban_expect(detector: str, n: int = 3, attacker: str = ATTACKER,
               allowed: tuple[str, ...] = ()) -> dict:
    return {
        "alerts_min": {detector: n},
        "alerts_allowed": sorted({detector, *allowed}),
        "no_alerts_from": [VICTIM, CLIENT],
        "bans": {attacker: detector},
    }


# -- captures ----------------------------------------------------------------------------
def cap_normal() -> Capture:
    cap = Capture("normal", "benign mix: ARP, pings, DNS, HTTP GET/POST with attack "
                  "look-alike parameters, keep-alive, responses with SQL/script text, IPv6 "
                  "HTTP and ND, HTTP on 8080, SSH on 22; nothing may alert, drop or ban")
    # ARP for the victim
    arp_req = ARP(op=1, hwsrc=mac_str(CLIENT), psrc=CLIENT, hwdst="00:00:00:00:00:00",
                  pdst=VICTIM)
    arp_rep = ARP(op=2, hwsrc=mac_str(VICTIM), psrc=VICTIM, hwdst=mac_str(CLIENT), pdst=CLIENT)
    cap.add(0.0, bytes(arp_req), src=CLIENT, dst=VICTIM, ethertype=ETH_ARP,
            eth_dst=b"\xff" * 6)
    cap.add(0.0002, bytes(arp_rep), src=VICTIM, dst=CLIENT, ethertype=ETH_ARP)
    pings(cap, 0.01, 4)
    # DNS A and AAAA over UDP
    sport = cap.eph_port()
    for i, (qtype, rdata) in enumerate((("A", VICTIM), ("AAAA", VICTIM6))):
        qid = cap.rng.randint(0, 0xFFFF)
        q = DNSQR(qname="www.ips.test", qtype=qtype)
        cap.add(0.5 + i * 0.001, cap.ip(CLIENT, RESOLVER) / UDP(sport=sport, dport=53)
                / DNS(id=qid, rd=1, qd=q))
        cap.add(0.5015 + i * 0.001, cap.ip(RESOLVER, CLIENT) / UDP(sport=53, dport=sport)
                / DNS(id=qid, qr=1, rd=1, ra=1, qd=q,
                      an=DNSRR(rrname="www.ips.test", type=qtype, ttl=300, rdata=rdata)))
    t = 1.0
    gets = ["/search?q=union+station", "/search?q=select+the+best+option",
            "/files?path=docs/readme.txt", "/search?q=cats+%26+dogs",
            "/search?q=rock+%26+roll%3B+2+tickets", "/", "/static/app.js?v=1.2.3"]
    for path in gets:
        benign_http(cap, t, path=path)
        t += 0.7
    posts = ["name=O%27Brien&city=Dublin", "comment=%3Cb%3Ebold%3C%2Fb%3E+text",
             "msg=Let%27s+meet+at+5+o%27clock&to=ops%40ips.test"]
    for body in posts:
        f = TcpFlow(cap, CLIENT, VICTIM, 80, t).handshake()
        f.exchange(http_post("/comment", body, extra=COOKIE),
                   http_response("", "303 See Other"))
        f.close()
        t += 0.7
    # JSON POST from another host
    f = TcpFlow(cap, CLIENT2, VICTIM, 80, t).handshake()
    f.exchange(http_post("/api/v1/notes", '{"title": "select the best option", "tags": '
                         '["union station", "cats & dogs"], "author": "O\'Brien"}',
                         ua=UA_CURL, ctype="application/json"),
               http_response('{"id": 17}', "201 Created", "application/json"))
    f.close()
    t += 0.7
    # keep-alive: two requests on one connection, the second response spans 3 segments and
    # contains SQL, script and shell text (server -> client: must not alert)
    doc = ("<!doctype html><html><head><script>var q = \"SELECT name FROM users WHERE id=1 "
           "UNION SELECT 1\"; document.write('<script>alert(1)</' + 'script>');</script>"
           "</head><body><pre>../../etc/passwd; cat /etc/passwd | id; $(whoami) `id`"
           " ' OR '1'='1 <img src=x onerror=alert(1)></pre>")
    doc += "<p>" + "lorem ipsum dolor sit amet " * 140 + "</p></body></html>\n"
    f = TcpFlow(cap, CLIENT, VICTIM, 80, t).handshake()
    f.exchange(http_get("/search?q=union+station", extra=COOKIE, keep_alive=True),
               http_response(PAGE, keep_alive=True))
    f.t += 0.3
    f.exchange(http_get("/docs/sql-tutorial.html", extra=COOKIE, keep_alive=True),
               http_response(doc, keep_alive=True))
    f.close(dt=1.0)
    t += 2.0
    # HTTP on a non-80 port, request split over two segments
    f = TcpFlow(cap, CLIENT2, VICTIM, 8080, t).handshake()
    req = http_get("/api/items?filter=select+the+best+option&sort=name", ua=UA_CURL)
    f.exchange(req, http_response('{"items": []}', ctype="application/json"), [40, 1000])
    f.close()
    t += 0.7
    # SSH on 22 (binary after the banners)
    f = TcpFlow(cap, CLIENT3, VICTIM, 22, t).handshake()
    f.send(False, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    f.ack(True)
    f.send(True, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    f.ack(False)
    blob = bytes(random.Random("ssh").getrandbits(8) for _ in range(1100))
    f.send(True, struct.pack(">I", len(blob)) + blob)
    f.ack(False)
    f.send(False, struct.pack(">I", 600) + blob[:600])
    f.ack(True)
    f.close()
    t += 0.7
    # IPv6: neighbour discovery, ping, HTTP
    ns = ICMPv6ND_NS(tgt=VICTIM6) / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(CLIENT6))
    cap.add(t, IPv6(src=CLIENT6, dst="ff02::1:ff00:10", hlim=255) / ns,
            eth_dst=bytes.fromhex("3333ff000010"))
    na = ICMPv6ND_NA(tgt=VICTIM6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac_str(VICTIM6))
    cap.add(t + 0.0002, IPv6(src=VICTIM6, dst=CLIENT6, hlim=255) / na)
    pings(cap, t + 0.01, 2, src=CLIENT6, dst=VICTIM6)
    t += 2.2
    benign_http(cap, t, CLIENT6, VICTIM6, "/search?q=union+station&lang=en")
    t += 0.7
    f = TcpFlow(cap, CLIENT6, VICTIM6, 80, t).handshake()
    f.exchange(http_post("/comment", "name=O%27Brien&comment=%3Cb%3Ehi%3C%2Fb%3E"),
               http_response(doc))
    f.close()
    cap.expect = {"no_alerts_from": [VICTIM, CLIENT, CLIENT2, CLIENT3, RESOLVER, VICTIM6,
                                     CLIENT6]}
    return cap


def cap_icmp_flood() -> Capture:
    cap = Capture("icmp_flood", "Linux cooked (SLL) capture on the victim: attacker sends 300 "
                  "echo requests in 1 s (victim answers them), client pings at 1/s",
                  linktype=LINKTYPE_LINUX_SLL)
    pings(cap, 0.0, 5)
    ident = 0x4D2
    payload = bytes(56)
    for k in range(1, 301):
        t = 1.1 + (k - 1) / 300
        tag = PASS if k <= 50 else DROP  # >50 per 1 s: the 51st triggers
        cap.add(t, cap.ip(ATTACKER, VICTIM) / ICMP(type=8, id=ident, seq=k) / Raw(payload), tag)
        cap.add(t + 0.00005, cap.ip(VICTIM, ATTACKER) / ICMP(type=0, id=ident, seq=k)
                / Raw(payload), PASS if k <= 50 else MAY)
    cap.expect = ban_expect("icmp_flood", 1)
    return cap


def cap_syn_flood() -> Capture:
    cap = Capture("syn_flood", "attacker sends 500 SYNs to port 80 in 1 s from varying "
                  "source ports (victim answers SYN-ACK, no handshake completes); client "
                  "does normal HTTP meanwhile")
    for i in range(4):
        benign_http(cap, 0.3 + i * 0.4, path=f"/page/{i}")
    isn_rng = random.Random("syn_flood-isn")
    for k in range(1, 501):
        t = 0.5 + (k - 1) * 0.002
        sport = 1024 + isn_rng.randint(0, 64000)
        seq = isn_rng.getrandbits(32)
        # >64 half-open is reached by the 65th SYN (before the rate limit at the 101st)
        tag = PASS if k <= 64 else DROP
        syn = IP(src=ATTACKER, dst=VICTIM, id=isn_rng.randint(0, 0xFFFF), ttl=64) / TCP(
            sport=sport, dport=80, flags="S", seq=seq, window=512)
        cap.add(t, syn, tag)
        sa = cap.ip(VICTIM, ATTACKER) / TCP(sport=80, dport=sport, flags="SA",
                                            seq=isn_rng.getrandbits(32), ack=seq + 1,
                                            window=65160, options=[("MSS", 1460)])
        cap.add(t + 0.00004, sa, PASS if k <= 64 else MAY)
    cap.expect = ban_expect("syn_flood", 1)
    return cap


def cap_half_open() -> Capture:
    cap = Capture("half_open", "nanosecond pcap: attacker opens 100 half-open connections to "
                  "port 80 at 40/s (below the SYN rate limit); over 64 half-open -> syn_flood",
                  nano=True)
    benign_http(cap, 0.1, path="/a")
    benign_http(cap, 3.0, path="/b")
    for k in range(1, 101):
        t = 0.2 + (k - 1) * 0.025
        f = TcpFlow(cap, ATTACKER, VICTIM, 80, t, tag_c=PASS if k <= 64 else DROP,
                    tag_s=PASS if k <= 64 else MAY)
        f.pkt(True, "S", options=[("MSS", 1460), ("SAckOK", b""),
                                  ("Timestamp", (f._tsval(ATTACKER), 0)), ("NOP", None),
                                  ("WScale", 7)])
        f.pkt(False, "SA", options=[("MSS", 1460), ("SAckOK", b""),
                                    ("Timestamp", (f._tsval(VICTIM), f._tsval(ATTACKER))),
                                    ("NOP", None), ("WScale", 7)], dt=0.0002)
    cap.expect = ban_expect("syn_flood", 1)
    return cap


CLOSED_RST = "RA"
OPEN_PORTS = (22, 80, 443)


def scan_capture(name: str, description: str, flags: str, nports: int, detector: str,
                 trigger: int, **kw) -> Capture:
    """TCP scan from one source port; victim: RST/ACK for closed ports, SYN-ACK for open
    ports to a SYN (then the scanner's RST), silence for open ports otherwise."""
    cap = Capture(name, description, **kw)
    benign_http(cap, 0.2, path="/before")
    pings(cap, 0.0, 4)
    rng = cap.rng
    ports = rng.sample([p for p in range(1, 1025) if p not in OPEN_PORTS], nports - 2)
    for p in (22, 80):
        ports.insert(rng.randint(0, len(ports)), p)
    sport = rng.randint(40000, 60000)
    for k, port in enumerate(ports, 1):
        t = 1.0 + (k - 1) * 0.005
        tag = PASS if k < trigger else DROP
        reply_tag = PASS if k < trigger else MAY
        seq = rng.getrandbits(32)
        opts = [("MSS", 1460)] if flags == "S" else []
        cap.add(t, IP(src=ATTACKER, dst=VICTIM, id=rng.randint(0, 0xFFFF), ttl=45)
                / TCP(sport=sport, dport=port, flags=flags, seq=seq, window=1024,
                      options=opts), tag)
        nxt = (seq + ("S" in flags) + ("F" in flags)) % 2**32
        if port not in OPEN_PORTS:
            cap.add(t + 0.0001, cap.ip(VICTIM, ATTACKER) / TCP(
                sport=port, dport=sport, flags=CLOSED_RST, seq=0, ack=nxt, window=0), reply_tag)
        elif flags == "S":
            cap.add(t + 0.0001, cap.ip(VICTIM, ATTACKER) / TCP(
                sport=port, dport=sport, flags="SA", seq=rng.getrandbits(32), ack=nxt,
                window=64240, options=[("MSS", 1460)]), reply_tag)
            cap.add(t + 0.0002, IP(src=ATTACKER, dst=VICTIM, id=0, ttl=64) / TCP(
                sport=sport, dport=port, flags="R", seq=nxt, window=0), tag)
    benign_http(cap, 3.0, path="/after")
    cap.expect = ban_expect(detector, 1)
    return cap


def cap_scan_udp() -> Capture:
    cap = Capture("scan_udp", "UDP scan of 100 ports from one source port; victim answers "
                  "ICMP port unreachable (rate limited: the first 6, then 1/s)")
    benign_http(cap, 0.2, path="/before")
    pings(cap, 0.0, 4)
    rng = cap.rng
    ports = rng.sample(range(1, 1025), 100)
    sport = rng.randint(40000, 60000)
    probes = {  # nmap's DNS status request and SNMPv1 get-request payloads
        53: bytes.fromhex("000010000000000000000000"),
        161: bytes.fromhex("3026020101040670756" "26c6963a01902040000000002010002010030"
                           "0b300906052b060102010500"),
    }
    last_unreach = -10.0
    sent_unreach = 0
    for k, port in enumerate(ports, 1):
        t = 1.0 + (k - 1) * 0.02
        tag = PASS if k <= 20 else DROP
        probe = IP(src=ATTACKER, dst=VICTIM, id=rng.randint(0, 0xFFFF), ttl=49) / UDP(
            sport=sport, dport=port) / Raw(probes.get(port, b""))
        cap.add(t, probe, tag)
        if sent_unreach < 6 or t - last_unreach >= 1.0:
            sent_unreach += 1
            last_unreach = t
            quoted = bytes(probe)[:28]
            cap.add(t + 0.0001, cap.ip(VICTIM, ATTACKER, tos=0xC0) / ICMP(type=3, code=3)
                    / Raw(quoted), PASS if k <= 20 else MAY)
    benign_http(cap, 3.5, path="/after")
    cap.expect = ban_expect("port_scan", 1)
    return cap


def cap_sqli_get() -> Capture:
    cap = Capture("sqli_get", "4 HTTP GETs with SQLi in the query (percent-encoded classic, "
                  "UNION SELECT with +, double-encoded, raw quote), one connection each, 2 s "
                  "apart; client browses meanwhile")
    reqs = [
        (http_get("/products?id=1%27%20OR%20%271%27%3D%271", ua=UA_CURL), 80, None, "%27"),
        (http_get("/products?id=-1+UNION+SELECT+username,password+FROM+users--", ua=UA_CURL),
         80, None, "UNION"),
        (http_get("/products?id=1%2527%2520OR%25201%253D1--%2520-", ua=UA_CURL), 80, None,
         "%2527"),
        (http_get("/login?user=admin'--&pass=x", ua=UA_CURL), 80, None, "'"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(5):
        benign_http(cap, 0.5 + i * 2.0, path=f"/search?q=union+station&page={i}")
    cap.expect = ban_expect("sqli")
    return cap


def cap_sqli_post() -> Capture:
    cap = Capture("sqli_post", "4 form POSTs (x-www-form-urlencoded) with SQLi in the body, "
                  "one connection each; the 3rd sends head and body in separate segments")
    r3 = http_post("/login", "username=%27+OR+1%3D1%23&password=x", ua=UA_CURL)
    head_len = r3.index(b"\r\n\r\n") + 4
    reqs = [
        (http_post("/login", "username=admin%27--&password=secret", ua=UA_CURL), 80, None,
         "username=admin"),
        (http_post("/search", "q=1%27+UNION+SELECT+username%2C+password+FROM+users--+-",
                   ua=UA_CURL), 80, None, "q=1"),
        (r3, 80, [head_len, len(r3) - head_len], "username="),
        (http_post("/api/item", "id=1%27+AND+SLEEP(5)--+-", ua=UA_CURL), 80, None, "id=1"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(5):
        f = TcpFlow(cap, CLIENT, VICTIM, 80, 0.5 + i * 2.0).handshake()
        f.exchange(http_post("/comment", "name=O%27Brien&comment=select+the+best+option",
                             extra=COOKIE), http_response("", "303 See Other"))
        f.close()
    cap.expect = ban_expect("sqli")
    return cap


def cap_xss() -> Capture:
    cap = Capture("xss", "4 XSS requests: script tag and img onerror in the query, svg onload "
                  "in a form POST to port 8080, body onload; one connection each")
    reqs = [
        (http_get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", ua=UA_CURL), 80, None,
         "%3Cscript"),
        (http_get("/profile?name=%3Cimg%20src%3Dx%20onerror%3Dalert(document.cookie)%3E",
                  ua=UA_CURL), 80, None, "%3Cimg"),
        (http_post("/comment", "comment=%22%3E%3Csvg%2Fonload%3Dalert(1)%3E", ua=UA_CURL),
         8080, None, "comment="),
        (http_get("/?q=%3Cbody%20onload%3Dalert(1)%3E", ua=UA_CURL), 80, None, "%3Cbody"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(5):
        benign_http(cap, 0.5 + i * 2.0, path=f"/search?q=%3Cb%3Ebold%3C%2Fb%3E+text&p={i}")
    cap.expect = ban_expect("xss")
    return cap


def cap_path_traversal() -> Capture:
    cap = Capture("path_traversal", "4 traversal requests: raw ../ in the path, %2e%2e%2f, "
                  "double-encoded ..%252f, ..%5c to win.ini; one connection each")
    reqs = [
        (http_get("/static/../../../../etc/passwd", ua=UA_CURL), 80, None, "/.."),
        (http_get("/download?file=%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", ua=UA_CURL), 80,
         None, "%2e"),
        (http_get("/download?file=..%252f..%252f..%252fetc%252fpasswd", ua=UA_CURL), 80, None,
         "..%25"),
        (http_get("/view?page=..%5c..%5c..%5cwindows%5cwin.ini", ua=UA_CURL), 80, None,
         "..%5c"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(5):
        benign_http(cap, 0.5 + i * 2.0, path=f"/files?path=docs/readme.txt&v={i}")
    cap.expect = ban_expect("path_traversal")
    return cap


def cap_cmd_injection() -> Capture:
    cap = Capture("cmd_injection", "4 command injections: ;cat /etc/passwd in the query, "
                  "shellshock in User-Agent, |id, $(whoami) and backticks; one connection "
                  "each (the first may also count as path_traversal for /etc/passwd)")
    shellshock = "() { :; }; /bin/bash -c 'id; uname -a'"
    reqs = [
        (http_get("/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", ua=UA_CURL), 80, None,
         "%3B"),
        (http_get("/cgi-bin/status", ua=shellshock), 80, None, "() {"),
        (http_get("/ping?host=127.0.0.1%7Cid", ua=UA_CURL), 80, None, "%7C"),
        (http_get("/lookup?domain=ips.test%24(whoami)&name=%60id%60", ua=UA_CURL), 80, None,
         "%24"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(5):
        benign_http(cap, 0.5 + i * 2.0, path=f"/search?q=cats+%26+dogs&p={i}")
    cap.expect = ban_expect("cmd_injection", allowed=("path_traversal",))
    return cap


def cap_split_attack() -> Capture:
    cap = Capture("split_attack", "raw-IP (DLT_RAW) capture: SQLi requests cut into small TCP "
                  "segments, the attack string split across segment boundaries, on 3 "
                  "connections (GET, POST with split head and body, GET); benign requests "
                  "are split too", linktype=LINKTYPE_RAW)
    r1 = http_get("/products?id=1%27%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--"
                  "%20-", ua=UA_CURL)
    r2 = http_post("/login", "username=%27+OR+%271%27%3D%271&password=x", ua=UA_CURL)
    body_at = r2.index(b"\r\n\r\n") + 4
    r3 = http_get("/item?id=1'+OR+1=1--+-", ua=UA_CURL)
    reqs = [
        (r1, 80, [7] * (len(r1) // 7), "%27"),
        (r2, 80, [60, body_at - 60, 14, 5, 6, 100], "username="),  # body cut inside "OR"
        (r3, 80, [16, 2, 5, 1000], "'"),
    ]
    attack_requests(cap, reqs, 1.0)
    for i in range(4):
        f = TcpFlow(cap, CLIENT, VICTIM, 80, 0.5 + i * 2.0).handshake()
        req = http_get(f"/search?q=select+the+best+option&page={i}", extra=COOKIE)
        f.exchange(req, http_response(PAGE), [9] * (len(req) // 9))
        f.close()
    cap.expect = ban_expect("sqli")
    return cap


def cap_malformed() -> Capture:
    cap = Capture("malformed", "14 undecodable packets (zero-length record, runt Ethernet, "
                  "truncated/bad-IHL/short-total-length IPv4, truncated TCP, TCP data offset "
                  "<5 and past the packet, truncated UDP, UDP length <8, truncated IPv6, IPv6 "
                  "hop-by-hop past the end, IPv6 payload length shorter than its extension "
                  "header) between valid pings, two SYNs with broken options (option length 0; "
                  "an option running past the header), which Linux accepts and so does the "
                  "decoder, an IPv4 packet with a Router Alert option and an HTTP exchange")
    a, v = ATTACKER, VICTIM
    pings(cap, 0.0, 2)
    broken: list[tuple[bytes, int] | bytes] = []

    def ip4(**kw) -> IP:
        return IP(src=a, dst=v, id=cap.ipid(a), ttl=64, **kw)

    def tcp_ack(**kw) -> TCP:
        fields = {"sport": 40001, "dport": 80, "flags": "A", "seq": 1000, "ack": 2000,
                  "window": 502, **kw}
        return TCP(**fields)

    echo = ICMP(type=8, id=7, seq=1) / Raw(b"x" * 8)
    broken.append(b"")  # zero-length record
    broken.append(mac(v)[:6])  # runt Ethernet frame (6 bytes)
    broken.append((bytes(ip4() / echo)[:12], ETH_IP4))  # truncated IPv4 header
    broken.append((bytes(ip4(ihl=3) / echo), ETH_IP4))  # IHL < 5
    broken.append((bytes(ip4(ihl=15) / echo), ETH_IP4))  # IHL 60 bytes > packet
    broken.append((bytes(ip4(len=12) / echo), ETH_IP4))  # total length < header
    broken.append((bytes(ip4(proto=6) / Raw(bytes(tcp_ack())[:8])), ETH_IP4))  # TCP trunc
    broken.append((bytes(ip4() / tcp_ack(dataofs=2)), ETH_IP4))  # data offset < 5
    broken.append((bytes(ip4() / tcp_ack(dataofs=15)), ETH_IP4))  # data offset past end
    # bad options on SYNs: MSS with length 0; a timestamp option (length 10) running
    # past the 4 option bytes into the payload. Linux stops parsing options there and
    # keeps the segment: valid, not counted as malformed.
    odd_options = [(bytes(ip4() / tcp_ack(flags="S", ack=0, dataofs=6)
                          / Raw(b"\x02\x00\x05\xb4")), ETH_IP4),
                   (bytes(ip4() / tcp_ack(sport=40002, flags="S", ack=0, dataofs=6)
                          / Raw(b"\x01\x01\x08\x0aGET / HTTP/1.0")), ETH_IP4)]
    broken[9:9] = odd_options
    broken.append((bytes(ip4(proto=17) / Raw(bytes(UDP(sport=5353, dport=53))[:4])),
                   ETH_IP4))  # truncated UDP header
    broken.append((bytes(ip4() / UDP(sport=5353, dport=53, len=4) / Raw(b"abcd")), ETH_IP4))
    e6 = ICMPv6EchoRequest(id=9, seq=1, data=b"y" * 8)
    broken.append((bytes(IPv6(src=ATTACKER6, dst=VICTIM6) / e6)[:20], ETH_IP6))  # trunc v6
    broken.append((bytes(IPv6(src=ATTACKER6, dst=VICTIM6, nh=0)
                         / Raw(b"\x3a\x14\x01\x04\0\0\0\0")), ETH_IP6))  # HBH 168 B > 8 B
    broken.append((bytes(IPv6(src=ATTACKER6, dst=VICTIM6, nh=60, plen=4)
                         / Raw(b"\x3a\x00\x01\x04\0\0\0\0" + bytes(IPv6() / e6)[40:])), ETH_IP6))
    for i, item in enumerate(broken):
        t = 2.5 + i * 0.05
        if isinstance(item, bytes):
            cap.add(t, b"", link=item)
        else:
            l3, etype = item
            src, dst = (ATTACKER6, VICTIM6) if etype == ETH_IP6 else (a, v)
            cap.add(t, l3, src=src, dst=dst, ethertype=etype, pad=False)
    # valid: an IGMPv2 report with a Router Alert IP option, an HTTP exchange, pings
    igmp = bytearray.fromhex("16000000e0000016")
    igmp[2:4] = struct.pack(">H", checksum(bytes(igmp)))
    cap.add(3.5, IP(src=CLIENT, dst="224.0.0.22", id=cap.ipid(CLIENT), ttl=1, tos=0xC0,
                    options=[IPOption_Router_Alert()], proto=2) / Raw(bytes(igmp)),
            eth_dst=bytes.fromhex("01005e000016"))
    benign_http(cap, 3.6, path="/still/alive?q=union+station")
    pings(cap, 4.0, 2)
    cap.expect = {
        "malformed_min": len(broken) - len(odd_options),
        "malformed_max": len(broken) - len(odd_options),
        "no_alerts_from": [VICTIM, CLIENT, ATTACKER, VICTIM6, ATTACKER6],
    }
    return cap


def cap_ipv6_attacks() -> Capture:
    cap = Capture("ipv6_attacks", "pcapng (nanosecond timestamps): SQLi over IPv6 TCP from "
                  "fd77::30 (4 requests, banned after the 3rd), then an ICMPv6 echo flood "
                  "(300 in 1 s) from fd77::31; client fd77::20 pings and browses",
                  fmt="pcapng")
    for host in (CLIENT6, ATTACKER6, ATTACKER6B):
        ns = ICMPv6ND_NS(tgt=VICTIM6) / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(host))
        cap.add(0.0, IPv6(src=host, dst="ff02::1:ff00:10", hlim=255) / ns,
                eth_dst=bytes.fromhex("3333ff000010"))
        na = ICMPv6ND_NA(tgt=VICTIM6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(
            lladdr=mac_str(VICTIM6))
        cap.add(0.0002, IPv6(src=VICTIM6, dst=host, hlim=255) / na)
    pings(cap, 0.01, 12, src=CLIENT6, dst=VICTIM6)
    reqs = [
        (http_get("/products?id=1%27%20OR%20%271%27%3D%271", ua=UA_CURL), 80, None, "%27"),
        (http_get("/products?id=-1+UNION+SELECT+username,password+FROM+users--", ua=UA_CURL),
         80, None, "UNION"),
        (http_post("/login", "username=admin%27--&password=secret", ua=UA_CURL), 80, None,
         "username="),
        (http_get("/login?user=admin'--&pass=x", ua=UA_CURL), 80, None, "'"),
    ]
    attack_requests(cap, reqs, 1.0, src=ATTACKER6, dst=VICTIM6)
    for i in range(4):
        benign_http(cap, 0.5 + i * 2.5, CLIENT6, VICTIM6, f"/search?q=union+station&p={i}")
    payload = bytes(56)
    for k in range(1, 301):
        t = 9.1 + (k - 1) / 300
        cap.add(t, IPv6(src=ATTACKER6B, dst=VICTIM6, hlim=64)
                / ICMPv6EchoRequest(id=0x77, seq=k, data=payload), PASS if k <= 50 else DROP)
        cap.add(t + 0.00005, IPv6(src=VICTIM6, dst=ATTACKER6B, hlim=64)
                / ICMPv6EchoReply(id=0x77, seq=k, data=payload), PASS if k <= 50 else MAY)
    cap.expect = {
        "alerts_min": {"sqli": 3, "icmp_flood": 1},
        "alerts_allowed": ["icmp_flood", "sqli"],
        "no_alerts_from": [VICTIM6, CLIENT6],
        "bans": {ATTACKER6: "sqli", ATTACKER6B: "icmp_flood"},
    }
    return cap


# -- evasion: IP fragments and TCP stream tricks ----------------------------------------
Pieces = list[tuple[int, int]]


def even_pieces(total: int, size: int) -> Pieces:
    return [(off, min(size, total - off)) for off in range(0, total, size)]


def overlapping_pieces(total: int, size: int = 48, step: int = 32) -> Pieces:
    """Pieces of `size` bytes every `step` bytes: each repeats the previous one's last
    bytes (identical overlaps); the last one runs to the end."""
    out = []
    for off in range(0, total, step):
        out.append((off, min(size, total - off)))
        if off + size >= total:
            break
    return out


def ip_fragments(cap: Capture, pkt: Packet, pieces: Pieces, replace: dict[int, bytes] | None = None,
                 ext: bool = False) -> list[Packet]:
    """Fragments of `pkt` holding the (offset, length) pieces of its payload; `replace`
    swaps other bytes into the piece at that index (an overlap that disagrees). IPv6
    fragments follow a hop-by-hop and a destination options header when `ext`."""
    body = bytes(pkt.payload)
    replace = replace or {}
    if isinstance(pkt, IPv6):
        ident = cap.rng.getrandbits(32)
    out: list[Packet] = []
    for i, (off, size) in enumerate(pieces):
        data = replace.get(i, body[off:off + size])
        more = off + size < len(body)
        if isinstance(pkt, IPv6):
            head = IPv6(src=pkt.src, dst=pkt.dst, hlim=64)
            if ext:
                head = head / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
            frag = IPv6ExtHdrFragment(nh=pkt.nh, offset=off // 8, m=int(more), id=ident)
            out.append(head / frag / Raw(data))
        else:
            out.append(IP(src=pkt.src, dst=pkt.dst, id=pkt.id, ttl=64, proto=pkt.proto,
                          flags="MF" if more else 0, frag=off // 8) / Raw(data))
    return out


def add_fragments(cap: Capture, t: float, frags: list[Packet], tags: list[str],
                  gap: float = 0.0001) -> float:
    for i, frag in enumerate(frags):
        cap.add(t + i * gap, frag, tags[i])
    return t + len(frags) * gap


def attack_tags(n: int) -> list[str]:
    """Held pieces pass; the one completing the datagram carries the attack: dropped."""
    return [PASS] * (n - 1) + [DROP]


def frag_request(f: TcpFlow, request: bytes, layout: str, attack: bool,
                 ext: bool = False, size: int = 24) -> None:
    """The request in one segment, sent as IP fragments: in order, reversed, or
    overlapping with identical bytes."""
    seg = f.segment(True, "PA", request, dt=0.0001)
    total = len(bytes(seg.payload))
    pieces = overlapping_pieces(total) if layout == "overlap" else even_pieces(total, size)
    frags = ip_fragments(f.cap, seg, pieces, ext=ext)
    if layout == "reversed":
        frags.reverse()
    tags = attack_tags(len(frags)) if attack else [PASS] * len(frags)
    f.t = add_fragments(f.cap, f.t, frags, tags)


def respond_and_close(f: TcpFlow, after: tuple[str, str] | None = None) -> None:
    if after:
        f.tag_c, f.tag_s = after
    f.ack(False, dt=0.0003)
    f.t += 0.002
    f.send(False, http_response(PAGE))
    f.ack(True, dt=0.0003)
    f.close()


FRAG_ATTACKS = [
    http_get("/products?id=1%27%20OR%20%271%27%3D%271", ua=UA_CURL),
    http_get("/products?id=-1+UNION+SELECT+username,password+FROM+users--", ua=UA_CURL),
    http_post("/login", "username=admin%27--&password=secret", ua=UA_CURL),
]


def frag_attacks(cap: Capture, src: str, dst: str, ext: bool) -> None:
    """Three SQLi requests in 24-byte fragments (the first holds only part of the TCP
    header): in order, reversed, overlapping; the third makes the ban. A fourth, after
    the ban, is dropped piece by piece."""
    for i, (req, layout) in enumerate(zip(FRAG_ATTACKS, ("in_order", "reversed", "overlap"),
                                          strict=True), 1):
        f = TcpFlow(cap, src, dst, 80, 1.0 + (i - 1) * 2.0).handshake()
        frag_request(f, req, layout, attack=True, ext=ext)
        respond_and_close(f, after=(DROP if i == 3 else MAY, MAY))
    f = TcpFlow(cap, src, dst, 80, 7.5, tag_c=DROP, tag_s=MAY).handshake()
    seg = f.segment(True, "PA", http_get("/after-ban", ua=UA_CURL), dt=0.0001)
    frags = ip_fragments(cap, seg, even_pieces(len(bytes(seg.payload)), 64), ext=ext)
    f.t = add_fragments(cap, f.t, frags, [DROP] * len(frags))
    respond_and_close(f)


def big_ping(cap: Capture, t: float, src: str, dst: str, ext: bool = False) -> None:
    """`ping -s 3000`: echo request and reply, each in 1480/1448-byte fragments."""
    data = bytes(range(256)) * 12
    if ":" in src:
        req = cap.ip(src, dst) / ICMPv6EchoRequest(id=0x51, seq=1, data=data)
        rep = cap.ip(dst, src) / ICMPv6EchoReply(id=0x51, seq=1, data=data)
        size = 1448
    else:
        req = IP(src=src, dst=dst, id=cap.ipid(src), ttl=64) / ICMP(type=8, id=0x51, seq=1) \
            / Raw(data)
        rep = IP(src=dst, dst=src, id=cap.ipid(dst), ttl=64) / ICMP(type=0, id=0x51, seq=1) \
            / Raw(data)
        size = 1480
    for i, pkt in enumerate((req, rep)):
        frags = ip_fragments(cap, pkt, even_pieces(len(bytes(pkt.payload)), size), ext=ext)
        add_fragments(cap, t + i * 0.0005, frags, [PASS] * len(frags))


def cap_frag_v4() -> Capture:
    cap = Capture("frag_v4", "SQLi in IPv4 fragments of 24 bytes on 3 connections: in order, "
                  "reversed, overlapping with identical bytes (each dropped by the fragment "
                  "completing the datagram; banned after the 3rd, a 4th request's fragments all "
                  "dropped); a client's GET in fragments, a fragmented UDP datagram and a "
                  "fragmented 3000-byte ping pass")
    frag_attacks(cap, ATTACKER, VICTIM, ext=False)
    f = TcpFlow(cap, CLIENT, VICTIM, 80, 0.5).handshake()
    frag_request(f, http_get("/search?q=union+station", extra=COOKIE), "in_order", False,
                 size=256)
    respond_and_close(f)
    udp = cap.ip(CLIENT2, VICTIM) / UDP(sport=cap.eph_port(), dport=514) / Raw(b"<13>" * 750)
    frags = ip_fragments(cap, udp, even_pieces(len(bytes(udp.payload)), 1480))
    add_fragments(cap, 2.5, frags, [PASS] * len(frags))
    big_ping(cap, 4.5, CLIENT, VICTIM)
    cap.expect = ban_expect("sqli")
    return cap


def cap_frag_conflict() -> Capture:
    cap = Capture("frag_conflict", "fragments whose overlapping bytes disagree (Ptacek-Newsham): "
                  "IPv4 bytes 48..95 sent twice, the second copy carrying SQLi; an IPv4 first "
                  "fragment sent twice with other bytes; IPv6 the same as the first. Each "
                  "datagram is dropped from the conflicting fragment on and never inspected "
                  "(no alert); the sender then retransmits the segment whole, benign, and it "
                  "passes. A client's identical overlaps pass")
    benign = http_get("/search?q=union+station&page=1", ua=UA_CURL)
    evil = b"?id=1%27%20OR%20%271%27%3D%271--%20-%20%20%20%20%20%20%20%20%20%20%20%20%20%20"
    cases = [(ATTACKER, VICTIM, 1, 1.0), (ATTACKER, VICTIM, 0, 2.0), (ATTACKER6, VICTIM6, 1, 3.0)]
    for src, dst, twice, t in cases:
        f = TcpFlow(cap, src, dst, 80, t).handshake()
        seg = f.segment(True, "PA", benign, dt=0.0001)
        total = len(bytes(seg.payload))
        pieces = [(0, 48), (48, 48), (48, 48), (96, total - 96)]
        if twice == 0:
            pieces = [(0, 48), (0, 48), (48, total - 48)]
        replace = {twice + 1: evil[:48]}
        frags = ip_fragments(cap, seg, pieces, replace=replace, ext=":" in src)
        tags = [PASS] * (twice + 1) + [DROP] * (len(frags) - twice - 1)
        f.t = add_fragments(cap, f.t, frags, tags)
        f.t += 0.2  # the sender's retransmission timer
        f.cap.add(f.t, f.segment(True, "PA", benign, seq=seg[TCP].seq), PASS)
        respond_and_close(f)
    f = TcpFlow(cap, CLIENT, VICTIM, 80, 0.5).handshake()
    frag_request(f, http_get("/index.html", extra=COOKIE), "overlap", False)
    respond_and_close(f)
    cap.expect = {"no_alerts_from": [VICTIM, CLIENT, ATTACKER, VICTIM6, ATTACKER6]}
    return cap


def cap_frag_v6() -> Capture:
    cap = Capture("frag_v6", "SQLi over IPv6 in 24-byte fragments behind hop-by-hop and "
                  "destination options headers: in order, reversed, overlapping identical "
                  "(banned after the 3rd; a 4th request's fragments all dropped); a client's "
                  "fragmented GET, an atomic fragment (offset 0, M=0) and a fragmented "
                  "3000-byte ping6 pass")
    frag_attacks(cap, ATTACKER6, VICTIM6, ext=True)
    f = TcpFlow(cap, CLIENT6, VICTIM6, 80, 0.5).handshake()
    frag_request(f, http_get("/search?q=union+station", extra=COOKIE), "in_order", False,
                 ext=True, size=256)
    respond_and_close(f)
    f = TcpFlow(cap, CLIENT6, VICTIM6, 80, 2.5).handshake()
    seg = f.segment(True, "PA", http_get("/atomic", extra=COOKIE), dt=0.0001)
    f.t = add_fragments(cap, f.t, ip_fragments(cap, seg, [(0, len(bytes(seg.payload)))]), [PASS])
    respond_and_close(f)
    big_ping(cap, 4.5, CLIENT6, VICTIM6, ext=True)
    cap.expect = ban_expect("sqli", attacker=ATTACKER6)
    cap.expect["no_alerts_from"] = [VICTIM6, CLIENT6]
    return cap


def cap_tcp_evasion() -> Capture:
    cap = Capture("tcp_evasion", "TCP stream evasions: SQLi in 1-byte segments; SQLi in 32-byte "
                  "segments sent in reverse order (held until the first fills the hole); a "
                  "retransmission whose bytes differ from the first copy (dropped: "
                  "stream_conflict; no alert); SQLi with identical and partly overlapping "
                  "retransmissions (3rd alert: ban). A client sends out of order past the "
                  "pending bound (the excess dropped: stream_overflow) and retransmits in order: "
                  "its clean request passes")
    attacks = [
        http_get("/products?id=1%27%20OR%20%271%27%3D%271", ua=UA_CURL),
        http_get("/products?id=-1+UNION+SELECT+username,password+FROM+users--", ua=UA_CURL),
        http_get("/login?user=admin'--&pass=x", ua=UA_CURL),
    ]
    # 1: one byte per segment
    f = TcpFlow(cap, ATTACKER, VICTIM, 80, 1.0).handshake()
    n = len(attacks[0])
    f.send(True, attacks[0], [1] * n, gap=0.0001, tags=attack_tags(n))
    respond_and_close(f, after=(MAY, MAY))
    # 2: reverse order
    f = TcpFlow(cap, ATTACKER, VICTIM, 80, 3.0).handshake()
    segs = [f.segment(True, "PA", attacks[1][i:i + 32], dt=0.0001)
            for i in range(0, len(attacks[1]), 32)]
    f.t = add_fragments(cap, f.t, segs[::-1], attack_tags(len(segs)))
    respond_and_close(f, after=(MAY, MAY))
    # 3: a retransmission with other bytes
    f = TcpFlow(cap, ATTACKER, VICTIM, 80, 5.0).handshake()
    benign = http_get("/search?q=union+station", ua=UA_CURL)
    first = f.segment(True, "PA", benign[:40], dt=0.0001)
    cap.add(f.t, first, PASS)
    evil = b"GET /search?q=1%27%20OR%20%271%27%3D%271"
    cap.add(f.t + 0.0001, f.segment(True, "PA", evil, seq=first[TCP].seq, dt=0.0001), DROP)
    f.send(True, benign[40:], gap=0.0001)
    respond_and_close(f)
    # 4: identical retransmissions, then the attack completes: the ban
    f = TcpFlow(cap, ATTACKER, VICTIM, 80, 7.0).handshake()
    req = attacks[2]
    start = f.nxt[ATTACKER]
    for a, b in ((0, 30), (0, 30), (20, 60), (60, len(req))):
        seq = (start + a) % 2**32
        tag = DROP if b == len(req) else PASS
        cap.add(f.t, f.segment(True, "PA", req[a:b], seq=seq, dt=0.0001), tag)
    f.nxt[ATTACKER] = (start + len(req)) % 2**32
    respond_and_close(f, after=(DROP, MAY))
    # a client: a hole, then more segments than the pending bound, then all again in order
    f = TcpFlow(cap, CLIENT2, VICTIM, 80, 0.5).handshake()
    req = http_get("/search?q=" + "select+the+best+option+" * 7, ua=UA_CURL)
    segs = [f.segment(True, "PA", req[i:i + 8], dt=0.0001) for i in range(0, 8 * 20, 8)]
    tags = [PASS] * 16 + [DROP] * (len(segs) - 17)
    f.t = add_fragments(cap, f.t, segs[1:], tags)
    f.t += 0.2
    for seg in segs:
        cap.add(f.t, seg.copy(), PASS)
        f.t += 0.0001
    f.send(True, req[8 * 20:], gap=0.0001)
    respond_and_close(f)
    cap.expect = ban_expect("sqli")
    cap.expect["no_alerts_from"] = [VICTIM, CLIENT, CLIENT2]
    return cap


def all_captures() -> list[Capture]:
    return [
        cap_normal(),
        cap_icmp_flood(),
        cap_syn_flood(),
        cap_half_open(),
        scan_capture("scan_syn", "SYN scan of 200 ports (22/80/443 open: SYN-ACK then the "
                     "scanner's RST; others RST/ACK) in 1 s", "S", 200, "port_scan", 21),
        scan_capture("scan_null", "NULL scan (no TCP flags) of 40 ports", "", 40, "null_scan",
                     1),
        scan_capture("scan_fin", "FIN scan (FIN alone, no connection) of 40 ports; the "
                     "client's normal FIN/ACK teardowns must not alert", "F", 40, "fin_scan",
                     1),
        scan_capture("scan_xmas", "big-endian pcap: XMAS scan (FIN+PSH+URG) of 40 ports",
                     "FPU", 40, "xmas_scan", 1, big_endian=True),
        cap_scan_udp(),
        cap_sqli_get(),
        cap_sqli_post(),
        cap_xss(),
        cap_path_traversal(),
        cap_cmd_injection(),
        cap_split_attack(),
        cap_malformed(),
        cap_ipv6_attacks(),
        cap_frag_v4(),
        cap_frag_conflict(),
        cap_frag_v6(),
        cap_tcp_evasion(),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "pcaps", help="output directory")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for cap in all_captures():
        data = cap.to_bytes()
        assert len(data) < 1_000_000, cap.name
        (args.out / cap.filename).write_bytes(data)
        side = json.dumps(cap.sidecar(), indent=2, sort_keys=True) + "\n"
        (args.out / f"{cap.name}.expected.json").write_text(side)
        print(f"{cap.filename}: {len(cap.records)} packets, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
