#!/usr/bin/env python3
"""Offline engine throughput vs a bare dpkt parse loop over the same packets.

Prints figures and ratios; asserts nothing (timing belongs in benchmarks, not
tests). Usage: bench_replay.py [PCAP ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ips_inline.config import Config  # noqa: E402
from ips_inline.eve import Collect  # noqa: E402
from ips_inline.packet.decode import Malformed, decode  # noqa: E402
from ips_inline.replay import build_engine  # noqa: E402
from ips_inline.sources.pcap import read_packets  # noqa: E402


def load(paths: list[str], repeat: int) -> list[tuple[float, bytes]]:
    base: list[tuple[float, bytes]] = []
    for path in paths:
        base += [(ts, l3) for ts, l3 in read_packets(path) if l3]
    span = (max(ts for ts, _ in base) - min(ts for ts, _ in base)) + 1.0
    return [(ts + i * span, l3) for i in range(repeat) for ts, l3 in base]


def bare_dpkt(packets: list[tuple[float, bytes]]) -> None:
    for _ts, l3 in packets:
        try:
            (dpkt.ip.IP if l3[0] >> 4 == 4 else dpkt.ip6.IP6)(l3)
        except (dpkt.UnpackError, IndexError):
            pass


def struct_decode(packets: list[tuple[float, bytes]]) -> None:
    for _ts, l3 in packets:
        try:
            decode(l3)
        except Malformed:
            pass


def engine_loop(packets: list[tuple[float, bytes]]) -> None:
    engine, _ = build_engine(Config(), Collect())
    process = engine.process
    for ts, l3 in packets:
        process(l3, ts)


def timed(fn, packets) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(packets)
        best = min(best, time.perf_counter() - start)
    return len(packets) / best


def table(packets: list[tuple[float, bytes]], label: str) -> None:
    print(f"\n{label}: {len(packets)} packets, best of 3 runs")
    base = timed(bare_dpkt, packets)
    rows = [("bare dpkt.ip.IP() parse loop", base),
            ("ips-inline struct decode only", timed(struct_decode, packets)),
            ("ips-inline engine, all detectors", timed(engine_loop, packets))]
    print(f"{'loop':<36}{'packets/s':>12}{'vs dpkt':>10}")
    for name, pps in rows:
        print(f"{name:<36}{pps:>12,.0f}{pps / base:>9.2f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("pcap", nargs="*")
    p.add_argument("--repeat", type=int, default=40)
    args = p.parse_args()
    paths = args.pcap or sorted(glob.glob("pcaps/*.pcap*"))
    packets = load(paths, args.repeat)
    table(packets, "all captures")
    clean = [p for p in paths if Path(p).name.startswith("normal")]
    if clean and not args.pcap:
        # Attack captures get their sources banned early, after which packets
        # are cheap drops; the clean capture shows the full per-packet cost.
        table(load(clean, args.repeat * 10), "normal.pcap only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
