#!/usr/bin/env python3
"""Micro-benchmark of the rules engine: match_http_head and match_http_body
on a realistic browser request (and a form POST), with 0, 100 and 1,000
generated rules beside the shipped ones, for each prefilter library.

    .venv/bin/python scripts/bench_rules.py [--seconds S] [--prefilter hyperscan|ahocorasick|both]

Prints µs per call. The generated rules have the shapes of real ones (a
distinctive content in a buffer, some with pcre, a few relative contents) and
do not match the request, so the figures show what the prefilter saves: the
per-request cost should stay flat as the rule count grows. The pyahocorasick
prefilter here is the alternative that was measured against Hyperscan.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ips_inline.rules.ruleset as ruleset_mod
from ips_inline.rules import Variables, load
from ips_inline.rules.prefilter import Prefilter as HyperscanPrefilter

try:
    import ahocorasick
except ImportError:  # optional: only this comparison needs it
    ahocorasick = None


class AhoCorasickPrefilter:
    """The same interface over pyahocorasick: str automata (latin-1), one for
    case-sensitive needles and one over the lowered buffer for nocase ones."""

    def __init__(self, needles: list[tuple[bytes, bool, int]]) -> None:
        self._cs = ahocorasick.Automaton()
        self._ci = ahocorasick.Automaton()
        owners: dict[tuple[bytes, bool], list[int]] = {}
        for pattern, nocase, rule in needles:
            key = (pattern.lower() if nocase else pattern, nocase)
            owners.setdefault(key, []).append(rule)
        self._n_cs = self._n_ci = 0
        for (pattern, nocase), rules in owners.items():
            auto = self._ci if nocase else self._cs
            auto.add_word(pattern.decode("latin-1"), tuple(rules))
            if nocase:
                self._n_ci += 1
            else:
                self._n_cs += 1
        if self._n_cs:
            self._cs.make_automaton()
        if self._n_ci:
            self._ci.make_automaton()

    def __len__(self) -> int:
        return self._n_cs + self._n_ci

    def scan(self, buf: bytes, out: set[int]) -> None:
        if not buf:
            return
        text = buf.decode("latin-1")
        if self._n_cs:
            for _end, rules in self._cs.iter(text):
                out.update(rules)
        if self._n_ci:
            for _end, rules in self._ci.iter(text.lower()):
                out.update(rules)


@dataclass
class Pkt:
    src: bytes = bytes((203, 0, 113, 9))
    dst: bytes = bytes((192, 168, 1, 10))
    proto: int = 6
    sport: int = 51234
    dport: int = 80
    flags: int = 0x18
    icmp_type: int = 0
    payload: bytes = b""


@dataclass
class Flow:
    established: bool = True
    to_server: bool = True


@dataclass
class Req:
    method: str
    target: str
    version: str = "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    body_cut: bool = False

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"


BROWSER_HEADERS = [
    ("Host", "shop.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Referer", "https://shop.example.com/catalog/shoes?page=2&sort=price"),
    ("Connection", "keep-alive"),
    ("Cookie", "session=5f2b8c1e9a7d4b3f8e6a2c1d0b9f8e7a; theme=dark; consent=1"),
    ("Upgrade-Insecure-Requests", "1"),
]
GET = Req("GET", "/catalog/shoes/running?size=42&color=blue&page=3", headers=BROWSER_HEADERS)
POST = Req("POST", "/account/profile", headers=[*BROWSER_HEADERS,
           ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "1900")],
           body=b"&".join(b"field%d=%s" % (i, b"value+with+some+words+%2C+and+more" * 2)
                          for i in range(24)))

_BUFFERS = ["http.uri", "http.uri.raw", "http.header", "http.user_agent", "http.cookie",
            "http.host", "http.request_body", "http.method", "http.referer"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz0123456789_") for _ in range(rng.randint(6, 12)))


def generated_rules(n: int, seed: int = 7) -> str:
    """n rules in the shapes of ET Open's web rules, none matching the requests above."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        buf = _BUFFERS[i % len(_BUFFERS)]
        parts = [f'msg:"bench {i}"', "flow:established,to_server", f"{buf}",
                 f'content:"{_word(rng)}"']
        if rng.random() < 0.5:
            parts.append("nocase")
        if rng.random() < 0.3:
            parts.append(f'content:"{_word(rng)}"; distance:0')
        if rng.random() < 0.2:
            parts.append(f'pcre:"/{_word(rng)}[0-9]{{2,}}/i"')
        parts += ["classtype:web-application-attack", f"sid:{5000000 + i}", "rev:1"]
        lines.append("alert http any any -> any any (" + "; ".join(parts) + ";)")
    return "\n".join(lines) + "\n"


def per_call(fn, seconds: float) -> float:
    for _ in range(50):
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / n * 1e6


def run(prefilter: str, counts: list[int], seconds: float) -> None:
    ruleset_mod.Prefilter = HyperscanPrefilter if prefilter == "hyperscan" \
        else AhoCorasickPrefilter  # type: ignore[assignment]
    pkt, flow = Pkt(), Flow()
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            path = Path(tmp) / f"gen{n}.rules"
            path.write_text(generated_rules(n))
            rs = load([str(path)], True, Variables.build())
            head = per_call(lambda rs=rs: rs.match_http_head(GET, pkt, flow, 0.0), seconds)
            body = per_call(lambda rs=rs: rs.match_http_body(POST, pkt, flow, 0.0), seconds)
            print(f"{prefilter:<12} {n:>5} extra rules ({rs.loaded:>5} loaded): "
                  f"head {head:7.1f} us   body {body:7.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--prefilter", choices=("hyperscan", "ahocorasick", "both"),
                    default="hyperscan")
    args = ap.parse_args()
    kinds = ["hyperscan", "ahocorasick"] if args.prefilter == "both" else [args.prefilter]
    for kind in kinds:
        if kind == "ahocorasick" and ahocorasick is None:
            print("ahocorasick: pyahocorasick is not installed (pip install pyahocorasick)")
            continue
        run(kind, [0, 100, 1000], args.seconds)


if __name__ == "__main__":
    main()
