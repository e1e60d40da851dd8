"""Packet mixes for the drain tests, written as files that pktsend.c replays.

File format: each IPv4 packet preceded by its length (2 bytes, big endian).
Sources are spoofed from the RFC 2544 benchmarking range 198.18.0.0/15: the
victim has no route back, so its replies (ICMP, SYN-ACK, RST) die at the route
lookup instead of adding traffic, and many sources spread the load over
--queue-balance queues (which hash on the address pair only). pktsend -o
shifts every source by a constant, so each repetition uses fresh sources.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

UDP_BASE = "198.18.0.0"
TCP_BASE = "198.18.128.0"
HTTP_BASE = "198.18.64.0"
ATTACK_BASE = "198.19.0.0"
REP_STRIDE = 4096  # source offset between repetitions (each mix uses fewer sources)
UDP_PAYLOAD = 18  # 20 IP + 8 UDP + 18 = 46-byte packet: a 64-byte Ethernet frame
UDP_SOURCES = 256
UDP_PORTS_PER_SOURCE = 16
TCP_CONNS_PER_SOURCE = 20  # at most ~20 SYN/s per source: far below syn_flood's 100/s
TCP_WAVE = 32  # connections opened together (interleaved handshakes)
HTTP_SOURCES = 150  # the HTTP-conversation mix: connection i comes from source i % 150
ATTACK_SOURCES = 100  # below bans.max_per_minute (120): every attacker can be banned
SYN, ACK, PSH, FIN, URG = 0x02, 0x10, 0x08, 0x01, 0x20

WORDS = ("widget", "blue shoes", "o'brien", "union station", "select the best option",
         "price<100", "caf%C3%A9", "a+b", "2024 report.pdf", "how to ping a server")


def http_clean(i: int) -> bytes:
    """A browser-like GET with a query of its own (the search words include
    benign look-alikes of attacks, percent-encoding and markup characters):
    repeated values (user agent, cookie) repeat, as in real traffic."""
    q = f"{WORDS[i % len(WORDS)]} {i}".replace(" ", "+").replace("'", "%27")
    return (f"GET /search?q={q}&page={i % 7}&sort=price HTTP/1.1\r\nHost: victim\r\n"
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
            "Firefox/128.0\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-US,en;q=0.5\r\nReferer: http://victim/\r\n"
            f"Cookie: session=ab{i % 50:04d}cd; theme=dark\r\n\r\n").encode()


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CATEGORIES = ("shoes", "books", "garden", "toys", "audio", "kitchen")


def http_conversation(rng: random.Random, i: int) -> bytes:
    """A browser-like GET in which every query value and every cookie but
    one differ from request to request (search words plus a number, a
    session id, a CSRF token, an analytics id, a cache buster), as in
    traffic of many users: no cache of known-clean values can hit them."""
    word = WORDS[rng.randrange(len(WORDS))].replace(" ", "+").replace("'", "%27")
    ts = 1767225600000 + i * 37 + rng.randrange(1000)
    query = (f"q={word}+{rng.randrange(10**6)}&category={rng.choice(CATEGORIES)}"
             f"&page={rng.randrange(1, 50)}&sid={rng.getrandbits(64):016x}&_={ts}")
    cookie = (f"session={rng.getrandbits(128):032x}; csrftoken={rng.getrandbits(96):024x}; "
              f"_ga=GA1.1.{rng.randrange(10**9, 10**10)}.{ts // 1000}; theme=dark")
    return (f"GET /products/search?{query} HTTP/1.1\r\nHost: victim\r\n"
            f"User-Agent: {FIREFOX}\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
            f"Referer: http://victim/products?page={rng.randrange(1, 50)}\r\n"
            f"Cookie: {cookie}\r\nConnection: keep-alive\r\n"
            "Upgrade-Insecure-Requests: 1\r\n\r\n").encode()


HTTP_ATTACKS = (
    b"GET /item?id=1%27%20OR%20%271%27=%271 HTTP/1.1\r\nHost: victim\r\n\r\n",
    b"GET /search?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: victim\r\n\r\n",
    b"GET /download?file=../../../../etc/passwd HTTP/1.1\r\nHost: victim\r\n\r\n",
    b"GET /search?q=x;cat%20/etc/shadow HTTP/1.1\r\nHost: victim\r\n\r\n",
)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    # Total length, id and header checksum are filled in by the kernel (IP_HDRINCL).
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
    return hdr + l4


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return struct.pack("!4s4sBBH", src, dst, 0, proto, length)


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(_pseudo(src, dst, 17, length) + seg) or 0xFFFF
    return _ip(src, dst, 17, seg[:6] + struct.pack("!H", csum) + seg[8:])


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"") -> bytes:
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload
    csum = checksum(_pseudo(src, dst, 6, len(seg)) + seg)
    return _ip(src, dst, 6, seg[:16] + struct.pack("!H", csum) + seg[18:])


def icmp_echo(src: bytes, dst: bytes, ident: int, seq: int) -> bytes:
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"\0" * 16
    return _ip(src, dst, 1, msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:])


def _addr(base: str, index: int) -> bytes:
    return (ipaddress.IPv4Address(base) + index).packed


def udp_mix(dst: str, count: int) -> list[bytes]:
    """Small clean UDP to port 9 (discard): 256 sources x 16 source ports."""
    d = ipaddress.IPv4Address(dst).packed
    payload = b"\0" * UDP_PAYLOAD
    flows = [(_addr(UDP_BASE, s), 20000 + p) for p in range(UDP_PORTS_PER_SOURCE)
             for s in range(UDP_SOURCES)]
    return [udp(src, d, sport, 9, payload) for src, sport in
            (flows[i % len(flows)] for i in range(count))]


def _connection(src: bytes, dst: bytes, sport: int, request: bytes) -> list[bytes]:
    """What the victim's INPUT sees of one short HTTP/1.1 connection, client side
    only: SYN, handshake ACK, request, ACK of the response, FIN, last ACK."""
    isn, rsn = random.getrandbits(32), random.getrandbits(32)
    c1, s1 = (isn + 1) & 0xFFFFFFFF, (rsn + 1) & 0xFFFFFFFF
    c2 = (c1 + len(request)) & 0xFFFFFFFF
    s2 = (s1 + 200) & 0xFFFFFFFF  # a 200-byte response
    return [tcp(src, dst, sport, 80, isn, 0, SYN),
            tcp(src, dst, sport, 80, c1, s1, ACK),
            tcp(src, dst, sport, 80, c1, s1, PSH | ACK, request),
            tcp(src, dst, sport, 80, c2, s2, ACK),
            tcp(src, dst, sport, 80, c2, s2, FIN | ACK),
            tcp(src, dst, sport, 80, (c2 + 1) & 0xFFFFFFFF, (s2 + 1) & 0xFFFFFFFF, ACK)]


def _conversation(src: bytes, dst: bytes, sport: int, request: bytes) -> list[bytes]:
    """An HTTP conversation, client side, without the server's reply: SYN,
    handshake ACK, request, FIN."""
    isn, rsn = random.getrandbits(32), random.getrandbits(32)
    c1, s1 = (isn + 1) & 0xFFFFFFFF, (rsn + 1) & 0xFFFFFFFF
    return [tcp(src, dst, sport, 80, isn, 0, SYN),
            tcp(src, dst, sport, 80, c1, s1, ACK),
            tcp(src, dst, sport, 80, c1, s1, PSH | ACK, request),
            tcp(src, dst, sport, 80, (c1 + len(request)) & 0xFFFFFFFF, s1, FIN | ACK)]


def _waves(conns: list[list[bytes]], wave: int) -> Iterator[bytes]:
    """Interleave connections in waves: all SYNs of a wave, then all ACKs..."""
    for start in range(0, len(conns), wave):
        group = conns[start:start + wave]
        for step in range(max(len(c) for c in group)):
            yield from (c[step] for c in group if step < len(c))


def tcp_mix(dst: str, count: int) -> list[bytes]:
    """Clean short HTTP connections (6 packets each, 20 per source)."""
    random.seed(1)
    d = ipaddress.IPv4Address(dst).packed
    n_conns = max(1, count // 6)
    conns = [_connection(_addr(TCP_BASE, i // TCP_CONNS_PER_SOURCE), d,
                         30000 + i % TCP_CONNS_PER_SOURCE, http_clean(i)) for i in range(n_conns)]
    return list(_waves(conns, TCP_WAVE))[:count]


def http_mix(dst: str, count: int) -> list[bytes]:
    """HTTP conversations (4 packets each) from 150 sources, every request
    different (http_conversation)."""
    random.seed(3)
    rng = random.Random(3)
    d = ipaddress.IPv4Address(dst).packed
    n_conns = max(1, -(-count // 4))
    conns = [_conversation(_addr(HTTP_BASE, i % HTTP_SOURCES), d, 30000 + i // HTTP_SOURCES,
                           http_conversation(rng, i)) for i in range(n_conns)]
    return list(_waves(conns, TCP_WAVE))[:count]


def _port_scan(src: bytes, dst: bytes, i: int) -> list[bytes]:
    return [tcp(src, dst, 40000 + i % 1000, 1 + i % 1024, i, 0, SYN)]


def _stealth_scan(src: bytes, dst: bytes, i: int) -> list[bytes]:
    return [tcp(src, dst, 40000 + i % 1000, 1 + i % 1024, i, 0, (0, FIN, FIN | PSH | URG)[i % 3])]


def _syn_flood(src: bytes, dst: bytes, i: int) -> list[bytes]:
    return [tcp(src, dst, 1024 + i % 60000, 80, i * 7919, 0, SYN)]


def _icmp_flood(src: bytes, dst: bytes, i: int) -> list[bytes]:
    return [icmp_echo(src, dst, 7, i & 0xFFFF)]


def _web_attack(src: bytes, dst: bytes, i: int) -> list[bytes]:
    # SYN, ACK, attacking request: a handshake the engine sees, so offences count.
    return _connection(src, dst, 41000 + i % 20000, HTTP_ATTACKS[i % len(HTTP_ATTACKS)])[:3]


ATTACKS = (_port_scan, _stealth_scan, _syn_flood, _icmp_flood, _web_attack)


def _attacker(src: bytes, dst: bytes, kind: int, budget: int) -> list[bytes]:
    """One attacker doing one kind of attack until its packet budget is spent."""
    out: list[bytes] = []
    i = 0
    while len(out) < budget:
        out += ATTACKS[kind](src, dst, i)
        i += 1
    return out[:budget]


def attack_mix(dst: str, count: int) -> list[bytes]:
    """100 attackers, 20 per kind (port scan, NULL/FIN/Xmas scan, SYN flood,
    ICMP flood, SQLi/XSS/traversal/command injection over handshakes),
    interleaved at random; each attacker's packets keep their order."""
    random.seed(2)
    rng = random.Random(2)
    d = ipaddress.IPv4Address(dst).packed
    budget = max(1, count // ATTACK_SOURCES)
    queues = [_attacker(_addr(ATTACK_BASE, s), d, s % len(ATTACKS), budget)
              for s in range(ATTACK_SOURCES)]
    pos = [0] * len(queues)
    live = list(range(len(queues)))
    out: list[bytes] = []
    while live:
        k = rng.randrange(len(live))
        q = live[k]
        out.append(queues[q][pos[q]])
        pos[q] += 1
        if pos[q] == len(queues[q]):
            live[k] = live[-1]
            live.pop()
    return out


def syn_template(src: str, dst: str, dport: int = 80) -> list[bytes]:
    """One SYN; pktsend -R gives each copy a random source (random-source flood)."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    return [tcp(s, d, 43000 + i, dport, i * 7919, 0, SYN) for i in range(64)]


def flood_from(src: str, dst: str) -> list[bytes]:
    """A banned source's flood: UDP, SYNs and echo requests from its real address."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    out: list[bytes] = []
    for i in range(64):
        out += [udp(s, d, 44000 + i, 9, b"\0" * UDP_PAYLOAD),
                tcp(s, d, 45000 + i, 80, i, 0, SYN), icmp_echo(s, d, 9, i)]
    return out


def background(src: str, dst: str, ports: Iterable[int]) -> list[bytes]:
    """Small UDP from the client to each port in turn: a steady trickle that
    keeps every latency-probed consumer awake (see probes.VARIANTS)."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    return [udp(s, d, 45000, port, b"\0" * UDP_PAYLOAD) for port in ports]


def write(path: Path, packets: Iterable[bytes]) -> int:
    n = 0
    with open(path, "wb") as fh:
        for pkt in packets:
            fh.write(struct.pack("!H", len(pkt)) + pkt)
            n += 1
    return n
