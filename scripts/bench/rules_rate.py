"""HTTP requests per second through the engine, in process, with 0, 100 and
1,000 generated rules loaded beside the shipped ones: the prefilter should
keep the cost per request flat as rules are added.

Each request is the HTTP-conversation mix's (SYN, ACK, a browser-like GET
with values of its own, FIN: mixes.http_conversation), through a fresh engine
per rule count (default config plus `rules.files`). The generated rules have
the shapes of real web rules and match none of the requests
(scripts/bench_rules.py).
"""

from __future__ import annotations

import ipaddress
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import mixes  # noqa: E402
from bench_rules import generated_rules  # noqa: E402

from ips_inline.config import Config  # noqa: E402
from ips_inline.eve import Collect  # noqa: E402
from ips_inline.replay import build_engine  # noqa: E402

COUNTS = (0, 100, 1000)
VICTIM = "10.77.0.10"


def conversations(n: int) -> list[list[bytes]]:
    rng = random.Random(11)
    dst = ipaddress.IPv4Address(VICTIM).packed
    base = int(ipaddress.IPv4Address(mixes.HTTP_BASE))
    return [mixes._conversation((base + i % mixes.HTTP_SOURCES).to_bytes(4, "big"), dst,
                                30000 + i // mixes.HTTP_SOURCES,
                                mixes.http_conversation(rng, i)) for i in range(n)]


def requests_per_second(rule_count: int, seconds: float, tmp: Path) -> float:
    cfg = Config()
    if rule_count:
        path = tmp / f"bench-{rule_count}.rules"
        path.write_text(generated_rules(rule_count))
        cfg.rules = replace(cfg.rules, files=[str(path)])
    cfg.detectors["syn_flood"].threshold = 1_000_000  # inspection is timed, not bans
    engine, _ = build_engine(cfg, Collect())
    convs = conversations(3000)
    process, now, done, start = engine.process, 1_700_000_000.0, 0, time.perf_counter()
    while True:
        for conv in convs:
            now += 0.0001
            for pkt in conv:
                process(pkt, now)
        done += len(convs)
        if time.perf_counter() - start >= seconds:
            return done / (time.perf_counter() - start)


def measure(seconds: float) -> dict[int, float]:
    with tempfile.TemporaryDirectory(prefix="ips-bench-rules-") as tmp:
        return {n: requests_per_second(n, seconds, Path(tmp)) for n in COUNTS}


if __name__ == "__main__":
    for n, rate in measure(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0).items():
        print(f"{n:5d} extra rules: {rate:8.0f} requests/s")
