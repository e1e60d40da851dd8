#!/usr/bin/env python3
"""make bench-adversarial: the engine's time per KB on pathological inputs.

In-process, no namespaces: one engine per run, built like `ips-inline replay`
builds it (replay.build_engine, default config), times `engine.process` over
the packets of one complete client-side TCP connection (SYN, ACK, the
request, FIN) for each family of hostile input at 1, 4, 16 and 64 KB of
request. Printed per row: total time, time per KB, and that per-KB time over
the family's 1 KB per-KB time (linear work stays near 1x; quadratic work
grows with the size: ~16x at 16 KB). A family that passes its time cap stops
and prints ">N s" (its larger sizes are not run). Figures are best of a few
runs, each on a fresh engine (the engine remembers clean values). No figure
is asserted; tests/test_bench_adversarial.py checks the table's shape.

usage: bench_adversarial.py [--sizes 1,4,16,64] [--cap SECONDS] [--repeat N]
                            [--memory-mb MB]
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ips_inline.config import Config  # noqa: E402
from ips_inline.engine import DROP  # noqa: E402
from ips_inline.eve import Collect  # noqa: E402
from ips_inline.replay import build_engine  # noqa: E402

SIZES_KB = (1, 4, 16, 64)
CAP_SECONDS = 10.0  # per family, all its sizes and repeats
REPEAT = 3
REPEAT_UNDER = 0.5  # seconds: slower runs are not repeated
MEMORY_MB = 2048  # address-space limit: an input that makes the engine hoard memory
# ends in MemoryError (counted as an engine error) instead of the OOM killer
CLIENT4, SERVER4 = bytes((198, 51, 100, 7)), bytes((192, 0, 2, 10))
CLIENT6 = bytes.fromhex("20010db8000000000000000000000007")
SERVER6 = bytes.fromhex("20010db8000000000000000000000010")
MSS = 1448
PIECE = 64  # bytes per out-of-order segment
# Bytes per IP fragment (a multiple of 8): a 16 KB request takes 228 pieces, under
# ips-inline's 256 per datagram; at 64 KB the datagram is dropped as too many.
FRAGMENT = 72
OOO_WINDOW = 16  # segments reversed per window: ips-inline holds 16 out of order
MAX_IP_PAYLOAD = 65535 - 40 - 20  # a datagram's bytes after IPv6 + TCP headers
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
WORDS = b"the+quick+brown+fox+jumps+over+the+lazy+dog+and+keeps+running+"


class Overtime(BaseException):
    """The family's time cap passed (BaseException: the engine's own
    `except Exception` guards must not swallow it)."""


# -- packets ---------------------------------------------------------------------------
def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0,
        offset: int = 0, more: bool = False) -> bytes:
    frag = (0x2000 if more else 0) | (offset // 8) | (0 if more or offset else 0x4000)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                      src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def ip6(src: bytes, dst: bytes, nxt: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, src, dst) + payload


def ip6_fragment(src: bytes, dst: bytes, nxt: int, piece: bytes, ident: int, offset: int,
                 more: bool) -> bytes:
    frag = struct.pack("!BBHI", nxt, 0, offset | int(more), ident)
    return ip6(src, dst, 44, frag + piece)


@dataclass
class Conn:
    """One client TCP connection as INPUT sees it (client half only)."""

    v6: bool
    sport: int
    seq: int = 1000

    @property
    def addrs(self) -> tuple[bytes, bytes]:
        return (CLIENT6, SERVER6) if self.v6 else (CLIENT4, SERVER4)

    def tcp(self, seq: int, flags: int, payload: bytes = b"") -> bytes:
        """The TCP segment (header + payload), checksum included."""
        src, dst = self.addrs
        seg = struct.pack("!HHIIBBHHH", self.sport, 80, seq & 0xFFFFFFFF, 1, 5 << 4, flags,
                          64240, 0, 0) + payload
        pseudo = (struct.pack("!16s16sIxxxB", src, dst, len(seg), 6) if self.v6
                  else struct.pack("!4s4sxBH", src, dst, 6, len(seg)))
        return seg[:16] + struct.pack("!H", checksum(pseudo + seg)) + seg[18:]

    def ip(self, l4: bytes) -> bytes:
        src, dst = self.addrs
        return ip6(src, dst, 6, l4) if self.v6 else ip4(src, dst, 6, l4)

    def open(self) -> list[bytes]:
        syn = self.ip(self.tcp(self.seq, SYN))
        self.seq += 1
        return [syn, self.ip(self.tcp(self.seq, ACK))]

    def data(self, payload: bytes, at: int | None = None) -> bytes:
        """One segment; `at`: its offset in the request (out of order)."""
        seq = self.seq if at is None else self.start + at
        pkt = self.ip(self.tcp(seq, PSH | ACK, payload))
        if at is None:
            self.seq += len(payload)
        return pkt

    def close(self) -> bytes:
        return self.ip(self.tcp(self.seq, FIN | ACK))

    @property
    def start(self) -> int:
        return 1001  # the first data byte's sequence number (seq 1000 + SYN)


# -- requests --------------------------------------------------------------------------
def post(body: bytes) -> bytes:
    return (b"POST /comment HTTP/1.1\r\nHost: victim\r\nUser-Agent: Mozilla/5.0\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def form(size: int, name: bytes, unit: bytes) -> bytes:
    """A POST of `size` bytes whose one form value is `unit` repeated."""
    fixed = len(post(b"")) - 1  # the head without Content-Length's digits
    body = size - fixed - len(str(size - fixed))
    if len(str(body)) < len(str(size - fixed)):  # one digit fewer (e.g. 10003 -> 9998)
        body += 1
    room = max(body - len(name) - 1, 0)
    return post(name + b"=" + (unit * (room // len(unit) + 1))[:room])


def benign(size: int) -> bytes:
    return form(size, b"comment", WORDS)


def long_head(size: int) -> bytes:
    """A request head of `size` bytes of header lines and no blank line."""
    start = b"GET /index.html HTTP/1.1\r\nHost: victim\r\n"
    lines = b"".join(b"X-Pad-%04d: aaaaaaaaaaaaaaaa\r\n" % i for i in range(size // 28 + 1))
    return (start + lines)[:size]


# -- packet sequences ------------------------------------------------------------------
def in_order(request: bytes, v6: bool = False, seg: int = MSS) -> list[bytes]:
    conn = Conn(v6, 40000)
    return [*conn.open(), *(conn.data(request[i:i + seg]) for i in range(0, len(request), seg)),
            conn.close()]


def one_byte(request: bytes) -> list[bytes]:
    return in_order(request, seg=1)


def out_of_order(request: bytes) -> list[bytes]:
    """PIECE-byte segments, each window of OOO_WINDOW sent last first."""
    conn = Conn(False, 40001)
    offsets = list(range(0, len(request), PIECE))
    order = [o for w in range(0, len(offsets), OOO_WINDOW)
             for o in reversed(offsets[w:w + OOO_WINDOW])]
    out = conn.open() + [conn.data(request[o:o + PIECE], at=o) for o in order]
    conn.seq = conn.start + len(request)
    return [*out, conn.close()]


def fragmented(request: bytes, v6: bool) -> list[bytes]:
    """The whole request in one TCP segment, sent as FRAGMENT-byte IP
    fragments in a shuffled order."""
    conn = Conn(v6, 40002)
    src, dst = conn.addrs
    opened = conn.open()
    l4 = conn.tcp(conn.seq, PSH | ACK, request)
    conn.seq += len(request)
    offsets = list(range(0, len(l4), FRAGMENT))
    random.Random(len(l4)).shuffle(offsets)
    step = FRAGMENT
    pieces = [(ip6_fragment(src, dst, 6, l4[o:o + step], 7, o, o + step < len(l4)) if v6
               else ip4(src, dst, 6, l4[o:o + step], 7, o, o + step < len(l4)))
              for o in offsets]
    return [*opened, *pieces, conn.close()]


@dataclass(frozen=True)
class Family:
    name: str
    packets: Callable[[int], list[bytes]]  # request size in bytes -> the connection
    max_size: int = 1 << 30


FAMILIES = (
    Family("control: benign form text", lambda n: in_order(benign(n))),
    Family("form value of '<'", lambda n: in_order(form(n, b"text", b"<"))),
    Family("form value of unclosed '/*'", lambda n: in_order(form(n, b"q", b"/*"))),
    Family("form value of '$('", lambda n: in_order(form(n, b"cmd", b"$("))),
    Family("form value of '(){'", lambda n: in_order(form(n, b"x", b"(){"))),
    Family("many '&' parameters", lambda n: in_order(form(n, b"a", b"1&a=1"))),
    Family("long head, no blank line", lambda n: in_order(long_head(n))),
    Family("1-byte TCP segments", lambda n: one_byte(benign(n))),
    Family(f"out-of-order {PIECE} B segments", lambda n: out_of_order(benign(n))),
    Family(f"IPv4 fragments of {FRAGMENT} B", lambda n: fragmented(benign(n), False),
           MAX_IP_PAYLOAD),
    Family(f"IPv6 fragments of {FRAGMENT} B", lambda n: fragmented(benign(n), True),
           MAX_IP_PAYLOAD),
)


# -- timing ----------------------------------------------------------------------------
# Another connection with a small benign request: the engine's first-request set-up
# (and nothing of the family's values) happens before the clock starts.
WARM = [*Conn(False, 39999).open(), Conn(False, 39999, 1001).data(benign(512)),
        Conn(False, 39999, 1001 + 512).close()]


@dataclass
class Result:
    family: str
    size: int  # request bytes
    packets: int
    seconds: float | None  # None: over the cap
    outcome: str = ""

    @property
    def per_kb(self) -> float | None:
        return self.seconds / (self.size / 1024) if self.seconds is not None else None


@dataclass
class Deadline:
    """Set when the cap passed. The alarm's handler raises Overtime wherever
    Python code runs next; in the compiled build that can be a callback the
    engine's C code made (a gc callback), which swallows it, so the timed
    loop also checks this between packets."""

    expired: bool = False


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Raise Overtime in the timed code once `seconds` passed."""
    state = Deadline()

    def overtime(_sig: int, _frame: object) -> None:
        state.expired = True
        raise Overtime

    old = signal.signal(signal.SIGALRM, overtime)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_once(packets: list[bytes], late: Deadline | None = None) -> tuple[float, str]:
    """Seconds to process the connection on a fresh engine, and what it did
    (Overtime once `late` expired)."""
    engine, _enforcer = build_engine(Config(), Collect())
    process, now, dropped = engine.process, 1000.0, 0
    for pkt in WARM:
        process(pkt, now)
    start = time.perf_counter()
    for pkt in packets:
        now += 1e-5
        if process(pkt, now) == DROP:
            dropped += 1
        if late is not None and late.expired:
            raise Overtime
    seconds = time.perf_counter() - start
    alerts = ",".join(sorted(name for name, n in engine.stats.alerts.items() if n))
    outcome = f"dropped {dropped}" if dropped else "accepted"
    errors = engine.stats.exceptions
    return seconds, outcome + (f"; alert {alerts}" if alerts else "") + (
        f"; {errors} engine errors" if errors else "")


def measure(family: Family, sizes: list[int], cap: float, repeat: int) -> list[Result]:
    out: list[Result] = []
    spent = 0.0
    for kb in sizes:
        size = min(kb * 1024, family.max_size)
        packets = family.packets(size)
        if out and out[-1].seconds is None:  # a smaller size already passed the cap
            out.append(Result(family.name, size, len(packets), None, "not run"))
            continue
        best: float | None = None
        outcome = ""
        try:
            for _ in range(repeat):
                with deadline(cap - spent) as late:
                    seconds, outcome = run_once(packets, late)
                spent += seconds
                best = seconds if best is None else min(best, seconds)
                if seconds > REPEAT_UNDER:
                    break
        except Overtime:
            spent = cap
            best, outcome = None, f"stopped at the {cap:g} s cap"
        out.append(Result(family.name, size, len(packets), best, outcome))
    return out


# -- the table -------------------------------------------------------------------------
COLUMNS = f"{'family':<30} {'KB':>5} {'packets':>8} {'total':>10} {'per KB':>10} " \
          f"{'vs 1 KB':>8}  outcome"


def row(r: Result, base: float | None, cap: float) -> str:
    kb = r.size / 1024
    if r.seconds is None:
        total, per_kb, growth = f">{cap:g} s", "-", "-"
    else:
        total, per_kb = f"{r.seconds * 1000:.2f} ms", f"{r.per_kb * 1e6:.0f} us"
        growth = f"{r.per_kb / base:.2f}x" if base else "-"
    return (f"{r.family:<30} {kb:>5.1f} {r.packets:>8} {total:>10} {per_kb:>10} {growth:>8}"
            f"  {r.outcome}")


def table(results: list[list[Result]], cap: float) -> str:
    bounds = Config().engine
    lines = [f"engine time per KB of request, default config (http_max_head "
             f"{bounds.http_max_head}, http_max_body {bounds.http_max_body}: requests past "
             "them are inspected as far as the bound); best of a few runs, fresh engine each",
             COLUMNS]
    for family in results:
        base = family[0].per_kb
        lines += [row(r, base, cap) for r in family]
    lines.append("vs 1 KB = per-KB time / the family's per-KB time at its first size: "
                 "linear ~1x, quadratic ~16x at 16 KB")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES_KB)),
                    help="request sizes in KB, comma-separated (default 1,4,16,64)")
    ap.add_argument("--cap", type=float, default=CAP_SECONDS,
                    help=f"seconds per family before it stops (default {CAP_SECONDS:g})")
    ap.add_argument("--repeat", type=int, default=REPEAT, help="runs per size (best kept)")
    ap.add_argument("--memory-mb", type=int, default=MEMORY_MB,
                    help=f"address-space limit of this process (default {MEMORY_MB})")
    args = ap.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        ap.error(f"--sizes must be integers, got {args.sizes!r}")
    if not args.sizes or args.sizes[0] < 1 or args.cap <= 0 or args.repeat < 1 or (
            args.memory_mb < 256):
        ap.error("sizes must be >= 1 KB, --cap > 0, --repeat >= 1, --memory-mb >= 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = args.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    results = []
    for family in FAMILIES:
        results.append(measure(family, args.sizes, args.cap, args.repeat))
        print(f"[adversarial] {family.name}: done", file=sys.stderr, flush=True)
    print(table(results, args.cap))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
