#!/usr/bin/env python3
"""make bench-engine: the engine's time per packet, interpreted against compiled
(ips_inline/compiled.py), in-process, on four loads:

- udp: 64-byte frames (46-byte IP packets) from 256 sources x 16 ports;
- syn: SYNs to port 80 from 1024 sources (each well under every threshold);
- http: HTTP conversations (SYN, SYN-ACK, ACK, a browser-like GET whose query
  values and cookies are new in every request, FIN) from 150 sources;
- corpus: every capture under ../shared/corpus replayed as scripts/corpus.py
  does (read, decode the link layer, fresh engine per capture), total seconds.

Each build runs in its own process (IPS_INLINE_PURE=1 for the interpreted one),
alternating, `--runs` times; a run times `--rounds` fresh engines over the same
packets and keeps its best round. Printed: the median of the runs' best and
their range, so the spread a shared machine adds is visible. Usage:
    bench_engine.py [--runs N] [--rounds N] [--count N] [--only udp,syn,http,corpus]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "bench"))

from mixes import FIN, PSH, SYN, http_conversation, tcp, udp_mix  # noqa: E402

from ips_inline import compiled  # noqa: E402
from ips_inline.config import Config  # noqa: E402
from ips_inline.eve import Collect  # noqa: E402
from ips_inline.replay import build_engine  # noqa: E402

ACK = 0x10
VICTIM = "10.77.0.10"
_DST = bytes((10, 77, 0, 10))
MIXES = ("udp", "syn", "http", "corpus")


def _src(i: int) -> bytes:
    return bytes((198, 18, i >> 8 & 0xFF, i & 0xFF))


def syn_mix(count: int) -> list[bytes]:
    return [tcp(_src(i % 1024), _DST, 20000 + i // 1024 % 40000, 80, i * 7919, 0, SYN)
            for i in range(count)]


def http_mix(count: int) -> list[bytes]:
    """Conversations of 5 packets, the server's SYN-ACK included (replay
    infers the kernel's conntrack state from both directions)."""
    rng = random.Random(3)
    out: list[bytes] = []
    for i in range(-(-count // 5)):
        src, sport = _src(i % 150), 30000 + i // 150 % 30000
        isn, rsn = rng.getrandbits(32), rng.getrandbits(32)
        c1, s1 = (isn + 1) & 0xFFFFFFFF, (rsn + 1) & 0xFFFFFFFF
        request = http_conversation(rng, i)
        out += [tcp(src, _DST, sport, 80, isn, 0, SYN),
                tcp(_DST, src, 80, sport, rsn, c1, SYN | ACK),
                tcp(src, _DST, sport, 80, c1, s1, ACK),
                tcp(src, _DST, sport, 80, c1, s1, PSH | ACK, request),
                tcp(src, _DST, sport, 80, (c1 + len(request)) & 0xFFFFFFFF, s1, FIN | ACK)]
    return out[:count]


def time_packets(packets: list[bytes], rounds: int, step: float) -> tuple[float, dict]:
    """Best seconds per packet over `rounds` fresh engines, and the verdicts
    (the same path in both builds, or the comparison is void)."""
    best = float("inf")
    verdicts: dict = {}
    for _ in range(rounds):
        engine, _enforcer = build_engine(Config(), Collect())
        process, now = engine.process, 1_700_000_000.0
        start = time.perf_counter()
        for pkt in packets:
            now += step
            process(pkt, now)
        best = min(best, (time.perf_counter() - start) / len(packets))
        verdicts = {"accept": engine.stats.count("accept"), "drop": engine.stats.count("drop"),
                    "alerts": sum(engine.stats.alerts.values())}
    return best, verdicts


def time_corpus(rounds: int) -> tuple[float, dict]:
    import corpus  # scripts/corpus.py: its runner, as make corpus runs it

    captures = corpus.find_captures(corpus.CORPUS)
    best, packets = float("inf"), 0
    for _ in range(rounds):
        start = time.perf_counter()
        results = [corpus.run_one(path, corpus.CORPUS, Config()) for path in captures]
        best = min(best, time.perf_counter() - start)
        packets = sum(r.packets for r in results)
    return best, {"captures": len(captures), "packets": packets}


def child(mixes: list[str], rounds: int, count: int) -> None:
    """One build's figures, as JSON on stdout."""
    loads: dict[str, Callable[[], tuple[float, dict]]] = {
        "udp": lambda: time_packets(udp_mix(VICTIM, count), rounds, 1e-5),
        "syn": lambda: time_packets(syn_mix(count), rounds, 1e-3),
        "http": lambda: time_packets(http_mix(count), rounds, 1e-4),
        "corpus": lambda: time_corpus(max(1, rounds // 3)),
    }
    sys.path.insert(0, str(REPO / "scripts"))
    out = {"build": compiled.state().build}
    for name in mixes:
        out[name] = loads[name]()
    json.dump(out, sys.stdout)


def run_child(pure: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    argv = [sys.executable, __file__, "--child", "--only", ",".join(args.only),
            "--rounds", str(args.rounds), "--count", str(args.count)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="processes per build (alternating)")
    ap.add_argument("--rounds", type=int, default=5, help="fresh engines per process")
    ap.add_argument("--count", type=int, default=20000, help="packets per round")
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(MIXES))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.only, args.rounds, args.count)
        return 0
    if "corpus" in args.only and not corpus_present():
        args.only = [m for m in args.only if m != "corpus"]
        print("bench-engine: no corpus at ../shared/corpus: its row left out")
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.runs):
        for pure in (True, False):
            runs[pure].append(run_child(pure, args))
    if runs[False][0]["build"] != "compiled":
        print(f"bench-engine: no compiled build in use ({compiled.state().reason})")
        return 1
    print(f"{'load':<8} {'interpreted':>22} {'compiled':>22} {'speed-up':>16}  same verdicts")
    for name in args.only:
        pure = [r[name][0] for r in runs[True]]
        fast = [r[name][0] for r in runs[False]]
        same = all(r[name][1] == runs[True][0][name][1] for r in runs[True] + runs[False])
        scale, unit = (1.0, "s") if name == "corpus" else (1e6, "us")
        ratio = [p / f for p, f in zip(pure, fast, strict=True)]
        print(f"{name:<8} {_cell(pure, scale, unit):>22} {_cell(fast, scale, unit):>22} "
              f"{statistics.median(ratio):>5.2f}x ({min(ratio):.2f}-{max(ratio):.2f})  "
              f"{'yes' if same else 'NO'} {runs[False][0][name][1]}")
    return 0


def _cell(values: list[float], scale: float, unit: str) -> str:
    med, low, high = (v * scale for v in (statistics.median(values), min(values), max(values)))
    digits = 2 if unit == "us" else 1
    return f"{med:.{digits}f} {unit} ({low:.{digits}f}-{high:.{digits}f})"


def corpus_present() -> bool:
    return (REPO.parent / "shared" / "corpus").is_dir()


if __name__ == "__main__":
    sys.exit(main())
