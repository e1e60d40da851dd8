"""End-to-end probes: latency, bulk TCP, banned-source flood, RSS under flood."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlab import BenchError, BenchLab, proc_status
from consumers import HERE, Ips

HTTP_PORT = 80
IPERF_PORT = 5201
DOWNLOAD_BYTES = 256 * 1024 * 1024  # victim_http's cap


@dataclass(frozen=True)
class Dist:
    p50: float
    p99: float
    n: int


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def dist(values: list[float]) -> Dist:
    if not values:
        raise BenchError("no samples")
    return Dist(percentile(values, 0.5), percentile(values, 0.99), len(values))


def bucket_quantiles(before: list[tuple[float, float]],
                     after: list[tuple[float, float]]) -> tuple[float, float] | None:
    """p50 and p99 (as bucket upper bounds, µs) of the observations between two
    reads of a cumulative Prometheus histogram."""
    if not after or len(before) != len(after):
        return None
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    if total <= 0:
        return None
    pick = [next(le for le, c in counts if c >= q * total) for q in (0.5, 0.99)]
    return pick[0] * 1e6, pick[1] * 1e6


@dataclass(frozen=True)
class Variant:
    """One consumer in the interleaved latency probe: its pings carry `size`
    payload bytes and its connects go to `port`; the victim's rules steer
    those to `queue` (None: accepted unqueued; 0: left to ips-inline's chain)."""

    label: str
    size: int
    port: int
    queue: int | None

    @property
    def udp_port(self) -> int:
        """Where the background trickle for this consumer goes."""
        return self.port + 1000


VARIANTS = (Variant("base", 56, 8081, None), Variant("c", 57, 8082, 1),
            Variant("py", 58, 8083, 2), Variant("ips", 59, 8084, 0))


def steering_rules(variants: tuple[Variant, ...] = VARIANTS) -> list[list[str]]:
    """INPUT rules (to insert at the top, above ips-inline's jump)."""
    rules = []
    for v in variants:
        if v.queue == 0:
            continue  # ips-inline's own chain queues it
        target = ["-j", "ACCEPT"] if v.queue is None else ["-j", "NFQUEUE", "--queue-num",
                                                             str(v.queue)]
        rules += [["INPUT", "-p", "icmp", "-m", "length", "--length", str(28 + v.size), *target],
                  ["INPUT", "-p", "tcp", "--dport", str(v.port), *target],
                  ["INPUT", "-p", "udp", "--dport", str(v.udp_port), *target]]
    return rules


@dataclass(frozen=True)
class Added:
    """One variant's RTTs and what it adds to the unqueued ones of the same rounds."""

    p50: float
    p99: float
    added_p50: float  # median over rounds of (this RTT - the unqueued RTT)
    n: int


def rtt_mux(lab: BenchLab, rounds: int, interval: float,
            variants: tuple[Variant, ...] = VARIANTS) -> dict[str, dict[str, Added]]:
    """{"ping" | "connect": {label: Added}} from one interleaved run."""
    argv = [sys.executable, HERE / "rtt_mux.py", lab.victim, rounds, interval,
            *(f"{v.label}:{v.size}:{v.port}" for v in variants)]
    raw = json.loads(lab.run("client", argv, timeout=2 * rounds * (interval + 8) + 30).stdout)
    out: dict[str, dict[str, Added]] = {}
    for kind in ("ping", "connect"):
        base = raw[variants[0].label][kind]
        out[kind] = {}
        for v in variants:
            got = raw[v.label][kind]
            pairs = [(x, b) for x, b in zip(got, base, strict=True) if x is not None
                     and b is not None]
            if not pairs:
                continue
            values = [x for x, _b in pairs]
            out[kind][v.label] = Added(percentile(values, 0.5), percentile(values, 0.99),
                                       percentile([x - b for x, b in pairs], 0.5), len(pairs))
    return out


def iperf3_bps(lab: BenchLab, seconds: float) -> float:
    """Upload client -> victim: the data segments cross the victim's INPUT (the queue)."""
    out = lab.run("client", ["iperf3", "-c", lab.victim, "-p", IPERF_PORT, "-t", seconds, "-J"],
                  timeout=seconds + 30).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def download_bps(lab: BenchLab) -> float:
    """HTTP download victim -> client: only the request and ACKs cross the queue."""
    url = f"http://{lab.victim}:{HTTP_PORT}/download?size={DOWNLOAD_BYTES}"
    out = lab.run("client", ["curl", "-s", "-m", "60", "-o", "/dev/null", "-w",
                             "%{speed_download}", url], timeout=90).stdout
    return float(out) * 8


def wait_tcp(lab: BenchLab, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = lab.run("victim", ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
        if out.strip():
            return
        if time.monotonic() > deadline:
            raise BenchError(f"nothing listening on victim port {port}")
        time.sleep(0.1)


def send(lab: BenchLab, host: str, sender: list[str], timeout: float = 120) -> tuple[int, float]:
    """Run pktsend in host; returns (packets sent, seconds)."""
    words = lab.run(host, sender, timeout=timeout).stdout.split()
    return int(words[words.index("sent") + 1]), float(words[words.index("seconds") + 1])


def idle(lab: BenchLab, queues: tuple[int, ...], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(s.length for q, s in lab.queues().items() if q in queues):
        if time.monotonic() > deadline:
            raise BenchError("queue did not drain")
        time.sleep(0.05)


@dataclass
class BannedFlood:
    sent: int
    pps: float
    ban_drop: int  # delta of the ipset DROP rule counter
    nfqueue: int  # delta of the NFQUEUE rule counter
    queued: int  # delta of the kernel queue's id sequence
    daemon: float  # delta of the daemon's packet counter


def banned_flood(lab: BenchLab, ips: Ips, pktsend: Path, flood: Path, count: int) -> BannedFlood:
    ips.cli("ban", lab.attacker, "--duration", "600")
    time.sleep(1.5)  # the daemon picks the store change up within a second
    before = (ips.counters(), lab.queues()[0].id_sequence, ips.metrics()["packets"])
    sent, secs = send(lab, "attacker", [pktsend, "-f", flood, "-n", count])
    time.sleep(1.5)  # metrics: figures are a second old at most
    after = (ips.counters(), lab.queues()[0].id_sequence, ips.metrics()["packets"])
    return BannedFlood(sent, sent / secs if secs else 0.0,
                       after[0]["ban_drop"] - before[0]["ban_drop"],
                       after[0]["nfqueue"] - before[0]["nfqueue"], after[1] - before[1],
                       after[2] - before[2])


@dataclass
class RssFlood:
    hwm_before_kb: int
    rss_before_kb: int
    hwm_mid_kb: int  # after the first half: the state tables are full by then
    hwm_after_kb: int
    rss_after_kb: int
    sent: int
    seconds: float
    seen: float  # packets the daemon inspected during the flood
    queued: int  # packets the kernel queued to it
    dropped: int  # queue full (fail-open off) or socket buffer full

    @property
    def plateau(self) -> float:
        """Growth across the second half: flat once the bounded tables are full."""
        return self.hwm_after_kb / self.hwm_mid_kb if self.hwm_mid_kb else 0.0

    @property
    def ratio(self) -> float:
        return self.hwm_after_kb / self.hwm_before_kb if self.hwm_before_kb else 0.0

    @property
    def unqueued(self) -> int:
        """Neither queued nor dropped: passed uninspected by fail-open."""
        return max(0, self.sent - self.queued - self.dropped)


def rss_flood(lab: BenchLab, ips: Ips, halves: tuple[list[str], list[str]]) -> RssFlood:
    """Peak RSS (VmHWM) before, halfway through and after a random-source SYN
    flood sent in two halves with different sources (spoofed sources have no
    route back: the victim's SYN-ACKs die at the route lookup)."""
    assert ips.proc is not None
    pid = ips.proc.pid
    hwm0, rss0, seen0 = proc_status(pid, "VmHWM"), proc_status(pid, "VmRSS"), ips.metrics()
    q0 = lab.queues()[0]
    sent, secs, mid = 0, 0.0, 0
    for i, sender in enumerate(halves):
        n, t = send(lab, "attacker", sender, timeout=300)
        sent, secs = sent + n, secs + t
        idle(lab, (0,))
        if i == 0:
            mid = proc_status(pid, "VmHWM")
    time.sleep(1.5)
    seen = ips.metrics()["packets"] - seen0["packets"]
    q1 = lab.queues()[0]
    if ips.proc.poll() is not None:
        raise BenchError(f"daemon died during the flood: {ips.log_tail()}")
    return RssFlood(hwm0, rss0, mid, proc_status(pid, "VmHWM"), proc_status(pid, "VmRSS"),
                    sent, secs, seen,
                    q1.id_sequence - q0.id_sequence - (q1.user_dropped - q0.user_dropped),
                    q1.dropped - q0.dropped + q1.user_dropped - q0.user_dropped)
