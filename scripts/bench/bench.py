#!/usr/bin/env python3
"""make bench: ips-inline throughput, latency and memory in a namespace lab.

Builds its own lab (scripts/lab.sh, prefix ipsb), compiles a C accept-all
NFQUEUE consumer (the ceiling) and a raw-socket packet sender, and prints one
table of figures and ratios measured in this run:
  - queue drain rates (kpps) of C, Python NetfilterQueue, Suricata 7 (NFQ
    workers, suricata.py) and ips-inline with one and two workers on clean
    UDP, clean TCP connections, HTTP conversations and an attack mix; each
    row's ratio is to C on the same mix, ips-inline's beside Suricata's;
  - a banned source's flood: the ipset drop counter rises, the queue sees nothing;
  - added latency (ping RTT, TCP connect) of C, Python and ips-inline vs no
    queue, all four measured in the same interleaved rounds (rtt_mux.py);
  - the daemon's peak RSS across a random-source SYN flood;
  - bulk TCP with flow bypass, without it, and without the IPS.
Everything it starts is stopped and the lab removed on exit, Ctrl-C or error.
No figure is asserted: targets are shown as ok/MISS for the reader.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import consumers  # noqa: E402
import drain  # noqa: E402
import mixes  # noqa: E402
import probes  # noqa: E402
import rules_rate  # noqa: E402
import suricata  # noqa: E402
from benchlab import BenchError, BenchLab  # noqa: E402
from consumers import Ips, IpsSettings  # noqa: E402
from report import Report, Row, gbps, kpps, machine, target, us  # noqa: E402

HERE = Path(__file__).resolve().parent
START = time.monotonic()
FAILURES = (BenchError, subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError)


@dataclass(frozen=True)
class Plan:
    packets: int = 60000  # drain burst; the kernel held at most 65536 per queue here
    reps: int = 3
    maxlen: int = 100000
    rcvbuf: int = 128 << 20
    rounds: int = 200  # latency rounds: one ping and one connect per consumer each
    round_interval: float = 0.025  # <= 40 pings/s reach ips-inline: under icmp_flood's 50/s
    bulk_seconds: float = 5.0
    banned_flood: int = 200000
    rss_flood: int = 1000000
    rss_seconds: float = 40.0
    budget: int = 900  # seconds for the whole run
    rules_seconds: float = 3.0  # per rule count, in process


TINY = Plan(packets=3000, reps=1, rounds=10, bulk_seconds=1.0, banned_flood=5000,
            rss_flood=5000, rss_seconds=5.0, budget=300, rules_seconds=0.3)


BACKGROUND_PPS = 1000  # per consumer in the busy latency run: a packet every ms
IDLE_CPU_SECONDS = 5.0
# the drain tests; latency, bulk, banned flood and RSS; the latency rounds alone
PARTS = ("drains", "live", "latency", "rules")
CLEAN_MIXES = ("udp", "tcp", "http")
DRAIN_MIXES = (*CLEAN_MIXES, "attack")
# The drain table: per mix, (consumer, row label); the key is drain.CONSUMER.MIX.
DRAIN_ROWS = {
    "udp": (("c", "C libnetfilter_queue accept-all, UDP (ceiling)"),
            ("py", "Python NetfilterQueue accept-all, UDP (floor)"),
            ("suri", "Suricata {suricata} x1, clean UDP"),
            ("ips1", "ips-inline x1, clean UDP 46 B"),
            ("ips2", "ips-inline x2 (--queue-balance), clean UDP")),
    "tcp": (("c", "C accept-all, clean TCP conns"),
            ("py", "Python accept-all, clean TCP conns"),
            ("suri", "Suricata {suricata} x1, clean TCP conns"),
            ("ips1", "ips-inline x1, clean TCP conns (6 pkt + GET)"),
            ("ips2", "ips-inline x2 (--queue-balance), clean TCP")),
    "http": (("c", "C accept-all, HTTP conversations"),
             ("py", "Python accept-all, HTTP conversations"),
             ("suri", "Suricata {suricata} x1, HTTP conversations"),
             ("ips1", "ips-inline x1, HTTP conversations (4 pkt)"),
             ("ips2", "ips-inline x2 (--queue-balance), HTTP convs")),
    "attack": (("c", "C accept-all, attack mix"),
               ("suri", "Suricata {suricata} x1, attack mix"),
               ("ips1", "ips-inline x1, attack mix")),
}
DRAIN_TITLES = {
    "udp": "small UDP (46 B, 256 sources x 16 ports)",
    "tcp": "clean TCP (SYN, ACK, GET, ACK, FIN, ACK; 20 conns per source)",
    "http": "HTTP conversations (SYN, ACK, GET with fresh values and cookies, FIN; "
            "150 sources)",
    "attack": "attack mix (100 attackers: scans, floods, web attacks)",
}
PACKETS_PER_CONN = {"tcp": 6, "http": 4}
# Issue targets as ratios to C; ips1 on UDP: Suricata's ratio in the same run when measured.
DRAIN_TARGETS = {("ips1", "udp"): 0.5, ("ips1", "tcp"): 0.5, ("ips1", "http"): 0.5,
                 ("ips2", "udp"): 0.9, ("ips2", "tcp"): 0.9}


class Budget(Exception):
    """The whole run took longer than its budget."""


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, lab: BenchLab, plan: Plan, tmp: Path) -> None:
        self.lab, self.plan, self.tmp = lab, plan, tmp
        self.bins: dict[str, Path] = {}
        self.files: dict[str, Path] = {}
        self.results: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        self.notes: list[str] = []
        allowed = sorted(os.sched_getaffinity(0))
        # the queue poller's core, and taskset -c lists for one-worker and x2 consumers
        self.timer_cpu, self.one_cpu = allowed[0], str(allowed[-1])
        self.all_cpus = ",".join(map(str, allowed))

    def attempt(self, key: str, fn: Callable[[], Any]) -> Any:
        log(key)
        try:
            self.results[key] = fn()
        except FAILURES as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.failures[key] = reason[:110]
            log(f"{key}: failed: {reason}")
        return self.results.get(key)

    # -- preparation ------------------------------------------------------------------
    def build(self) -> None:
        for name, libs in (("pktsend", []), ("nfq_accept", ["-lnetfilter_queue", "-lnfnetlink"])):
            out = self.tmp / name
            cp = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(HERE / f"{name}.c"),
                                 *libs], capture_output=True, text=True, check=False)
            if cp.returncode != 0:
                self.failures[f"build.{name}"] = f"gcc failed: {cp.stderr.strip()[:100]}"
            else:
                self.bins[name] = out

    def make_files(self) -> None:
        n, v = self.plan.packets, self.lab.victim
        for name, packets in (("udp", mixes.udp_mix(v, n)), ("tcp", mixes.tcp_mix(v, n)),
                              ("http", mixes.http_mix(v, n)),
                              ("attack", mixes.attack_mix(v, n)),
                              ("banned", mixes.flood_from(self.lab.attacker, v)),
                              ("syn", mixes.syn_template(self.lab.client, v)),
                              ("bg", mixes.background(self.lab.client, v,
                                                      [x.udp_port for x in probes.VARIANTS]))):
            self.files[name] = self.tmp / f"{name}.bin"
            mixes.write(self.files[name], packets)

    def sender(self, mix: str, rep: int) -> list[str]:
        if "pktsend" not in self.bins:
            raise BenchError("pktsend did not compile")
        return [str(self.bins["pktsend"]), "-f", str(self.files[mix]), "-o",
                str(rep * mixes.REP_STRIDE)]

    # -- drain tests ------------------------------------------------------------------
    def drains(self, consumer: consumers.Consumer, mix: str, reps: range) -> list[drain.Drain]:
        return [drain.drain_once(self.lab, consumer.proc.pid, consumer.queues,
                                 self.sender(mix, rep)) for rep in reps]

    def drain_plain(self, key: str, start: Callable[[], consumers.Consumer], mix: str) -> None:
        def run() -> list[drain.Drain]:
            consumer = start()
            try:
                return self.drains(consumer, mix, range(self.plan.reps))
            finally:
                self.lab.kill(consumer.proc)

        self.attempt(key, run)

    def drain_ips(self, key: str, mix: str, workers: int, fresh_each_rep: bool) -> None:
        settings = IpsSettings(drain=True, maxlen=self.plan.maxlen, rcvbuf=self.plan.rcvbuf,
                               workers=workers, floods_raised=mix in CLEAN_MIXES,
                               cpus=self.one_cpu if workers == 1 else self.all_cpus)
        ips = Ips(self.lab, self.tmp / key, settings)

        def run() -> list[drain.Drain]:
            runs: list[drain.Drain] = []
            try:
                consumer = ips.start()
                for rep in range(self.plan.reps):
                    if rep and fresh_each_rep:  # bans and state from the last burst go
                        ips.stop()
                        consumer = ips.start()
                    runs += self.drains(consumer, mix, range(rep, rep + 1))
                    if ips.proc is None or ips.proc.poll() is not None:
                        raise BenchError(f"daemon exited: {ips.log_tail()}")
                time.sleep(1.2 if workers > 1 else 0.1)  # worker figures reach the supervisor
                self.results[f"{key}.metrics"] = ips.metrics()
                return runs
            finally:
                ips.stop()

        self.attempt(key, run)

    def drain_suricata(self, mix: str) -> None:
        """One Suricata per mix: the rate rules get the thresholds ips-inline
        has on that mix (raised on clean mixes, the defaults on attacks)."""
        key = f"drain.suri.{mix}"
        limits = (suricata.Thresholds(consumers.RAISED, consumers.RAISED) if mix in CLEAN_MIXES
                  else suricata.Thresholds(consumers.DEFAULTS["icmp_flood"].threshold,
                                           consumers.DEFAULTS["syn_flood"].threshold))
        suri = suricata.Suricata(self.lab, self.tmp / key, limits, int(self.one_cpu))

        def run() -> list[drain.Drain]:
            try:
                runs = self.drains(suri.start(), mix, range(self.plan.reps))
            finally:
                suri.stop()
            self.results[f"{key}.outcome"] = suri.outcome()
            return runs

        self.attempt(key, run)

    @contextmanager
    def drain_setup(self) -> Iterator[None]:
        """The bench (the queue poller, the sender) on the first core it may
        use, one-worker consumers on the last; accepted drain packets dropped
        in the security table, after INPUT, so the victim's stack does not
        answer or track them (its work would be timed as the consumer's)."""
        saved = os.sched_getaffinity(0)
        sink = self.lab.run("victim", ["iptables", "-w", "-t", "security", "-A",
                                       *consumers.SINK_RULE], check=False)
        if sink.returncode != 0:
            self.notes.append("no security table: accepted drain packets reached the victim's "
                              f"stack ({sink.stderr.strip()[:80]})")
        os.sched_setaffinity(0, {self.timer_cpu})
        try:
            yield
        finally:
            os.sched_setaffinity(0, saved)
            self.lab.run("victim", ["iptables", "-w", "-t", "security", "-D",
                                    *consumers.SINK_RULE], check=False)

    def all_drains(self) -> None:
        with self.drain_setup():
            self.plain_drains()
            self.suricata_drains()
            self.ips_drains()

    def plain_drains(self) -> None:
        """The accept-all consumers on each mix."""
        consumers.plain_rule(self.lab, "-A")
        try:
            for mix in DRAIN_MIXES:
                if "nfq_accept" not in self.bins:
                    self.failures[f"drain.c.{mix}"] = self.failures["build.nfq_accept"]
                    continue
                self.drain_plain(f"drain.c.{mix}", lambda: consumers.start_c(
                    self.lab, self.bins["nfq_accept"], self.plan.maxlen, self.plan.rcvbuf,
                    cpus=self.one_cpu), mix)
            for mix in CLEAN_MIXES:
                self.drain_plain(f"drain.py.{mix}", lambda: consumers.start_py(
                    self.lab, self.plan.maxlen, self.plan.rcvbuf, cpus=self.one_cpu), mix)
        finally:
            consumers.plain_rule(self.lab, "-D")

    def suricata_drains(self) -> None:
        if suricata.binary() is None:
            for mix in DRAIN_MIXES:
                self.failures[f"drain.suri.{mix}"] = "suricata not installed"
            return
        self.results["suricata.version"] = suricata.version()
        consumers.plain_rule(self.lab, "-A")
        try:
            for mix in DRAIN_MIXES:
                self.drain_suricata(mix)
        finally:
            consumers.plain_rule(self.lab, "-D")

    def ips_drains(self) -> None:
        for mix in DRAIN_MIXES:
            self.drain_ips(f"drain.ips1.{mix}", mix, 1, fresh_each_rep=mix == "attack")
        for mix in CLEAN_MIXES:
            if consumers.workers_supported():
                self.drain_ips(f"drain.ips2.{mix}", mix, 2, fresh_each_rep=False)
            else:
                self.failures[f"drain.ips2.{mix}"] = "live.workers not implemented in daemon.py"

    # -- live measurements --------------------------------------------------------------
    def services(self) -> None:
        self.lab.popen("victim", [sys.executable, consumers.REPO / "scripts" / "victim_http.py",
                                  "--bind", "0.0.0.0", "--port", str(probes.HTTP_PORT)])
        probes.wait_tcp(self.lab, probes.HTTP_PORT)
        ports = [str(v.port) for v in probes.VARIANTS]
        self.lab.popen("victim", [sys.executable, HERE / "listeners.py", *ports])
        for port in ports:
            probes.wait_tcp(self.lab, int(port))
        if shutil.which("iperf3"):
            self.lab.popen("victim", ["iperf3", "-s", "-p", str(probes.IPERF_PORT)])
            probes.wait_tcp(self.lab, probes.IPERF_PORT)
        else:
            self.notes.append("iperf3 missing: apt-get install iperf3 (bulk upload rows n/a)")

    def latency(self, ips: Ips, busy: bool) -> dict[str, dict[str, probes.Added]]:
        """C (queue 1), Python (queue 2) and ips-inline (its chain) side by
        side with unqueued traffic, each fed its own pings and connects;
        `busy`: with a background trickle of BACKGROUND_PPS per consumer, so
        none sleeps long between packets."""
        variants = tuple(v for v in probes.VARIANTS if v.label != "c" or "nfq_accept" in self.bins)
        rules = probes.steering_rules(variants)
        started: list[consumers.Consumer] = []
        try:
            if "nfq_accept" in self.bins:
                started.append(consumers.start_c(self.lab, self.bins["nfq_accept"], 1024, 1 << 20,
                                                 queue=1))
            started.append(consumers.start_py(self.lab, 1024, 1 << 20, queue=2))
            for rule in reversed(rules):
                self.lab.run("victim", ["iptables", "-w", "-I", rule[0], "1", *rule[1:]])
            if busy:
                seconds = 2 * self.plan.rounds * (self.plan.round_interval + 0.01) + 30
                pps = BACKGROUND_PPS * len(variants)
                started.append(consumers.Consumer("background", self.lab.popen("client", [
                    self.bins["pktsend"], "-f", self.files["bg"], "-b", "1", "-r", str(pps),
                    "-t", f"{seconds:.0f}", "-n", str(int(seconds * pps))])))
            before = ips.histogram()
            result = probes.rtt_mux(self.lab, self.plan.rounds, self.plan.round_interval,
                                    variants)
            self.results[f"ips.callback.{'busy' if busy else 'idle'}"] = probes.bucket_quantiles(
                before, ips.histogram())
            return result
        finally:
            for rule in rules:
                self.lab.run("victim", ["iptables", "-w", "-D", *rule], check=False)
            for consumer in started:
                self.lab.kill(consumer.proc)

    def bulk(self, tag: str, ips: Ips | None) -> None:
        for kind, fn in (("iperf", lambda: probes.iperf3_bps(self.lab, self.plan.bulk_seconds)),
                         ("download", lambda: probes.download_bps(self.lab))):
            if kind == "iperf" and not shutil.which("iperf3"):
                self.failures[f"{tag}.iperf"] = "iperf3 not installed"
                continue
            before = ips.metrics()["packets"] if ips else 0.0
            if self.attempt(f"{tag}.{kind}", fn) is not None and ips is not None:
                self.results[f"{tag}.{kind}.inspected"] = ips.metrics()["packets"] - before

    def conntrack_only(self) -> None:
        """iperf3 with conntrack on and nothing else: flow bypass needs it
        (CONNMARK), so this is the share of the bypass cost that is the kernel's."""
        if not shutil.which("iperf3"):
            return
        rule = ["INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"]
        self.lab.run("victim", ["iptables", "-w", "-I", *rule])
        try:
            self.attempt("conntrack.iperf",
                         lambda: probes.iperf3_bps(self.lab, self.plan.bulk_seconds))
        finally:
            self.lab.run("victim", ["iptables", "-w", "-D", *rule], check=False)

    def with_daemon(self, name: str, settings: IpsSettings,
                    body: Callable[[Ips], None]) -> None:
        """ips-inline with `settings` around body(ips); a failed start is
        recorded as `name`.start and skips the body."""
        ips = Ips(self.lab, self.tmp / name, settings)
        if self.attempt(f"{name}.start", ips.start) is None:
            return
        try:
            body(ips)
        finally:
            ips.stop()

    def live(self) -> None:
        self.attempt("services", self.services)
        self.bulk("base", None)
        self.conntrack_only()
        self.with_daemon("ips", IpsSettings(), self.default_daemon)
        self.latency_without_warmup()
        self.with_daemon("nobypass", IpsSettings(bypass=False),
                         lambda ips: self.bulk("nobypass", ips))

    def default_daemon(self, ips: Ips) -> None:
        self.latencies(ips)
        self.bulk("ips", ips)
        if "pktsend" in self.bins:
            self.attempt("banned", lambda: probes.banned_flood(
                self.lab, ips, self.bins["pktsend"], self.files["banned"],
                self.plan.banned_flood))
            self.attempt("rss", lambda: probes.rss_flood(self.lab, ips, self.rss_sender()))

    def latencies(self, ips: Ips, tag: str = "") -> None:
        """Latency rounds idle and busy, and the daemon's CPU while idle;
        `tag` tells a second daemon config's results apart."""
        self.attempt(f"cpu{tag}", lambda: ips.idle_cpu(IDLE_CPU_SECONDS))
        self.attempt(f"latency{tag}.idle", lambda: self.latency(ips, busy=False))
        if "pktsend" in self.bins:
            self.attempt(f"latency{tag}.busy", lambda: self.latency(ips, busy=True))

    def latency_without_warmup(self) -> None:
        """The same rounds with the warm-up rounds off: what they buy."""
        self.with_daemon("nowarm", IpsSettings(warm_interval=0),
                         lambda ips: self.latencies(ips, ".nowarm"))

    def latency_only(self) -> None:
        self.attempt("services", self.services)
        self.with_daemon("ips", IpsSettings(), self.latencies)
        self.latency_without_warmup()

    def rss_sender(self) -> tuple[list[str], list[str]]:
        """Two halves with different random sources, paced near the daemon's
        measured TCP rate so it inspects most of the flood."""
        tcp = self.results.get("drain.ips1.tcp")
        rate = 0.8 * drain.median_drain(tcp).kpps * 1000 if tcp else 30000.0
        half = str(self.plan.rss_flood // 2)
        return tuple([str(self.bins["pktsend"]), "-f", str(self.files["syn"]), "-n", half,
                      "-R", seed, "-r", f"{rate:.0f}", "-t", str(self.plan.rss_seconds / 2)]
                     for seed in ("12345", "54321"))


# -- the table -------------------------------------------------------------------------
class Render:
    def __init__(self, bench: Bench, report: Report) -> None:
        self.b, self.r = bench, report
        self.res, self.fail = bench.results, bench.failures

    def missing(self, label: str, key: str) -> bool:
        if key in self.res:
            return False
        self.r.na(label, self.fail.get(key, "not run"))
        return True

    def c_rate(self, mix: str) -> float | None:
        runs = self.res.get(f"drain.c.{mix}")
        return drain.median_drain(runs).kpps if runs else None

    def ratio(self, key: str) -> float | None:
        """A drain row's rate over C's on the same mix (`key` ends with the mix)."""
        runs, c = self.res.get(key), self.c_rate(key.rpartition(".")[2])
        return drain.median_drain(runs).kpps / c if runs and c else None

    def drain_row(self, label: str, key: str, wanted: float | None = None,
                  lead: str = "", extra: str = "") -> None:
        """`key` ends with the mix; the ratio is to the C consumer on that mix."""
        if self.missing(label, key):
            return
        runs: list[drain.Drain] = self.res[key]
        med = drain.median_drain(runs)
        ratio = self.ratio(key)
        split = "/".join(str(v) for v in med.backlog.values())
        note = f"{split} in {med.seconds * 1000:.0f} ms; {drain.spread(runs)}".rstrip("; ")
        if med.unqueued:
            note += f"; FAIL-OPEN passed {med.unqueued} unqueued"
            self.b.notes.append(f"{label}: fail-open was on (live.fail_open=false not applied)")
        if med.queue_dropped or med.user_dropped:
            note += f"; dropped {med.queue_dropped}+{med.user_dropped}"
        self.r.add(Row(label, kpps(med.kpps), f"{ratio:.2f}x" if ratio else "",
                       target(ratio, wanted) if ratio and wanted else "",
                       "; ".join(x for x in (lead, note, extra) if x)))

    def drains(self) -> None:
        p = self.b.plan
        version = self.res.get("suricata.version", "7")
        for n, (mix, rows) in enumerate(DRAIN_ROWS.items()):
            self.r.section(f"queue drain, {DRAIN_TITLES[mix]}" + (
                "" if n else f": kpps = backlog / drain time, median of {p.reps} bursts of "
                f"{p.packets} pkts; ratio = vs C accept-all on the same mix"))
            suri = self.ratio(f"drain.suri.{mix}")
            for who, label in rows:
                key = f"drain.{who}.{mix}"
                lead = f"Suricata {suri:.2f}x" if who.startswith("ips") and suri else ""
                self.drain_row(label.format(suricata=version), key, self.wanted(who, mix, suri),
                               lead, self.drain_extra(who, mix))

    @staticmethod
    def wanted(who: str, mix: str, suri: float | None) -> float | None:
        if (who, mix) == ("ips1", "udp"):
            # issue 14: at or above Suricata's ratio in the same run
            return round(suri, 2) if suri else DRAIN_TARGETS[who, mix]
        return DRAIN_TARGETS.get((who, mix))

    def drain_extra(self, who: str, mix: str) -> str:
        key = f"drain.{who}.{mix}"
        if who == "suri" and f"{key}.outcome" in self.res:
            extra = str(self.res[f"{key}.outcome"])
        elif who == "ips1" and mix == "attack":
            extra = self.verdicts(f"{key}.metrics")
        else:
            extra = ""
        if mix in PACKETS_PER_CONN and who in ("suri", "ips1", "ips2"):
            extra = "; ".join(x for x in (self.conns(key, PACKETS_PER_CONN[mix], who != "ips2"),
                                          extra) if x)
        return extra

    def conns(self, key: str, per_conn: int, each: bool) -> str:
        """Connections per second; `each`: with the time per connection (one core)."""
        runs = self.res.get(key)
        if not runs:
            return ""
        rate = drain.median_drain(runs).kpps * 1000 / per_conn
        return f"= {rate:,.0f} conn/s" + (f", {1e6 / rate:.0f} us each" if each and rate else "")

    def verdicts(self, key: str) -> str:
        m = self.res.get(key)
        if not m or not m.get("packets"):
            return ""
        share = {k.split("/")[1]: v / m["packets"] for k, v in m.items() if "/" in k and v}
        return " ".join(f"{k} {v:.0%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))

    def banned(self) -> None:
        self.r.section("banned source flood (attacker banned with `ips-inline ban`)")
        if self.missing("banned attacker floods", "banned"):
            return
        f: probes.BannedFlood = self.res["banned"]
        self.r.add(Row("packets sent by the banned attacker", f"{f.sent}", "", "",
                       f"{f.pps / 1000:.0f} kpps, UDP+SYN+ICMP from its own address"))
        self.r.add(Row("ipset DROP rule counter", f"+{f.ban_drop}", "", "", "dropped in kernel"))
        reached = max(f.nfqueue, f.queued, int(f.daemon))
        self.r.add(Row("reached the daemon", f"{reached}", "", target(reached, 0, "="),
                       f"NFQUEUE rule +{f.nfqueue}, queue ids +{f.queued}, "
                       f"daemon packets +{f.daemon:.0f}"))

    def latency(self) -> None:
        for mode, title in (("idle", "each consumer idle ~25 ms before every probe"),
                            ("busy", f"with {BACKGROUND_PPS} pkt/s of background per consumer")):
            self.r.section(f"latency, client -> victim, consumers side by side: {title}")
            if self.missing("latency", f"latency.{mode}"):
                continue
            self.latency_rows(self.res[f"latency.{mode}"], self.res.get(f"ips.callback.{mode}"),
                              self.res.get(f"latency.nowarm.{mode}"))
        for tag, label in (("", "default config"), (".nowarm", "live.warm_interval = 0")):
            row = f"ips-inline CPU while idle, {label}"
            if not self.missing(row, f"cpu{tag}"):
                self.r.add(Row(row, f"{100 * self.res[f'cpu{tag}']:.1f}%", "", "",
                               f"of one core, over {IDLE_CPU_SECONDS:.0f} s without traffic"))

    def latency_rows(self, res: dict[str, dict[str, probes.Added]],
                     callback: tuple[float, float] | None,
                     nowarm: dict[str, dict[str, probes.Added]] | None) -> None:
        for kind, label in (("ping", "ping RTT"), ("connect", "TCP connect")):
            base = res[kind].get("base")
            if base is None:
                self.r.na(f"{label}, no rules", "no samples")
                continue
            self.r.add(Row(f"{label} p50, no rules", us(base.p50), "", "",
                           f"p99 {us(base.p99)}, n={base.n}"))
            for tag, name in (("c", "C accept-all"), ("py", "Python accept-all"),
                              ("ips", "ips-inline default config")):
                a = res[kind].get(tag)
                if a is None:
                    self.r.na(f"  added by {name}", "no samples")
                    continue
                self.r.add(Row(f"  added by {name}", f"{a.added_p50:+.0f} us", "",
                               target(a.added_p50, 100, "<=") if tag == "ips" else "",
                               f"median per-round difference; p50 {us(a.p50)}, "
                               f"p99 {us(a.p99)}, n={a.n}"))
            cold = nowarm[kind].get("ips") if nowarm else None
            if cold is not None:
                self.r.add(Row("  added by ips-inline, live.warm_interval = 0",
                               f"{cold.added_p50:+.0f} us", "", "",
                               f"its own rounds; p50 {us(cold.p50)}, p99 {us(cold.p99)}, "
                               f"n={cold.n}"))
        if callback:
            self.r.add(Row("  ips-inline callback time (its histogram)", f"p50 <={us(callback[0])}",
                           "", "", f"p99 <={us(callback[1])}; sampled packets, bucket bounds"))

    def rss(self) -> None:
        self.r.section("daemon peak RSS (VmHWM) across a random-source SYN flood")
        if self.missing("peak RSS", "rss"):
            return
        f: probes.RssFlood = self.res["rss"]
        self.r.add(Row("before the flood (after the tests above)", mib(f.hwm_before_kb), "", "",
                       f"VmRSS {mib(f.rss_before_kb)}"))
        self.r.add(Row(f"after {f.sent // 2:,} SYNs (tables full)", mib(f.hwm_mid_kb),
                       f"{f.hwm_mid_kb / f.hwm_before_kb:.2f}x", "", "vs before the flood"))
        self.r.add(Row(f"after {f.sent:,} SYNs, random sources", mib(f.hwm_after_kb),
                       f"{f.plateau:.2f}x", target(f.plateau, 1.2, "<="),
                       f"vs halfway; {f.ratio:.2f}x vs before; VmRSS {mib(f.rss_after_kb)}; "
                       f"offered {f.sent / f.seconds / 1000:.0f} kpps for {f.seconds:.0f} s"))
        fate = f"queue full: dropped {f.dropped:,}" if f.dropped else ""
        if f.unqueued:
            fate = f"fail-open passed {f.unqueued:,} uninspected" + (f", {fate}" if fate else "")
        self.r.add(Row("  flood packets the daemon inspected", f"{f.seen:,.0f}", "", "",
                       f"= {f.seen / f.seconds / 1000:.1f} kpps; {fate or 'none lost'}"))

    def bulk(self) -> None:
        self.r.section(f"bulk TCP, {self.b.plan.bulk_seconds:g} s iperf3 upload (data crosses "
                       "the queue) / 256 MiB HTTP download")
        for kind, name in (("iperf", "iperf3 upload"), ("download", "HTTP download")):
            self.bulk_row(f"{name}, no rules", f"base.{kind}", None)
            if kind == "iperf":
                self.bulk_row(f"{name}, conntrack only (no IPS)", "conntrack.iperf", None)
            self.bulk_row(f"{name}, ips-inline, bypass (default)", f"ips.{kind}", 0.9)
            self.bulk_row(f"{name}, ips-inline, bypass_after_packets=0", f"nobypass.{kind}", None)

    def bulk_row(self, label: str, key: str, wanted: float | None) -> None:
        if self.missing(label, key):
            return
        base = self.res.get("base." + key.split(".", 1)[1])
        ratio = self.res[key] / base if base else None
        inspected = self.res.get(f"{key}.inspected")
        self.r.add(Row(label, gbps(self.res[key]), f"{ratio:.2f}x" if ratio else "",
                       target(ratio, wanted) if ratio and wanted else "",
                       f"daemon inspected {inspected:,.0f} pkts" if inspected is not None
                       else ""))

    def all(self) -> None:
        self.drains()
        self.banned()
        self.latency()
        self.rss()
        self.bulk()
        self.rules()

    def rules(self) -> None:
        rates = self.res.get("rules")
        if rates is None:
            return
        self.r.section("rules: HTTP conversations through the engine in process (SYN, ACK, a "
                       "browser-like GET, FIN), shipped rules plus generated ones")
        base = rates[0]
        for count, rate in rates.items():
            self.r.add(Row(f"{count:,} generated rules", f"{rate:,.0f} req/s",
                           f"{rate / base:.2f}x" if base else "", "", "vs no generated rules"))


# -- running -------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> tuple[Plan, str, set[str]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--prefix", default="ipsb", help="lab prefix (default ipsb)")
    ap.add_argument("--packets", type=int, help="drain burst size")
    ap.add_argument("--reps", type=int, help="drain repetitions per row")
    ap.add_argument("--budget", type=int, help="seconds for the whole run")
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="run only this part (repeatable; default: all)")
    args = ap.parse_args(argv)
    plan = TINY if args.tiny else Plan()
    overrides = {k: v for k, v in (("packets", args.packets), ("reps", args.reps),
                                   ("budget", args.budget)) if v}
    return replace(plan, **overrides), args.prefix, set(args.only or PARTS)


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("make bench needs root (network namespaces, iptables, NFQUEUE)")
    for tool in ("gcc", "ip", "iptables", "ipset", "ping", "curl", "ss", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"'{tool}' not found (scripts/setup.sh installs it)")


def other_namespaces(prefix: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return {ln.split()[0] for ln in out.splitlines()
            if ln.strip() and not ln.startswith(prefix + "-")}


def interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def over_budget(_sig: int, _frame: object) -> None:
    raise Budget("time budget exceeded")


def standing_notes(bench: Bench, others: set[str]) -> list[str]:
    notes = [
        "drain: consumer SIGSTOPped, burst sent from the client, backlog read from the victim's "
        "nfnetlink_queue, SIGCONT, timed to empty. ips-inline drain config = defaults + "
        "live.fail_open=false, queue_maxlen=100000, sock_rcvbuf=128 MiB; on the clean mixes "
        f"syn_flood and icmp_flood thresholds at {consumers.RAISED:,} (inspection is timed, "
        "not the ban path)",
        f"drain pinning: one-worker consumers (C, Python, Suricata, ips-inline x1) on CPU "
        f"{bench.one_cpu}, the queue poller and the sender on CPU {bench.timer_cpu}, x2 on CPUs "
        f"{bench.all_cpus}. Accepted drain packets end in `iptables -t security -A INPUT -s "
        "198.18.0.0/15 -j DROP`: the victim's stack neither answers nor tracks them",
        "clean TCP and HTTP conversations = the client side of connections replayed (the "
        "server's half leaves through OUTPUT, which is not queued): a live connection-rate "
        "tool would time the client and the Python web server sharing the CPUs, not the IPS. "
        "HTTP conversations: every request has its own search words, session id, CSRF token, "
        "analytics id and cache buster (no cache of clean values helps)",
        "Suricata: `suricata -c YAML -S RULES -q 0 --runmode workers`, nfq mode accept, one "
        "worker, max-pending-packets 16384, HTTP parser only, async-oneside; 30 drop rules: "
        "ICMP/SYN rate per source (ips-inline's thresholds on that mix), NULL/FIN/Xmas flags, "
        "SQLi (3 pcres, no prefilter), XSS, traversal, sensitive files, command injection on "
        "URI, body and cookie, shellshock on headers (scripts/bench/suricata.py); started "
        "once per mix",
        "drain sources are spoofed in 198.18.0.0/15; x2 needs many sources, --queue-balance "
        "hashes addresses only",
    ]
    if others:
        notes.append(f"{len(others)} other network namespace(s) existed during the run "
                     f"({', '.join(sorted(others)[:3])}...): other work may have shared the CPUs")
    return notes + bench.notes


def cleanup(lab: BenchLab, tmp: Path, bench: Bench) -> int:
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        lab.down()
    except (BenchError, subprocess.SubprocessError) as exc:
        bench.notes.append(f"CLEANUP FAILED, check `ip netns list`: {exc}")
        return 1
    return 0


def execute(bench: Bench, lab: BenchLab, parts: set[str]) -> None:
    if "rules" in parts:  # in process: before the lab, on a quiet machine
        log("rules: requests/s with 0, 100, 1000 generated rules")
        bench.results["rules"] = rules_rate.measure(bench.plan.rules_seconds)
    if not parts - {"rules"}:
        return
    bench.build()
    log("lab up")
    lab.up()
    bench.make_files()
    if "drains" in parts:
        bench.all_drains()
    if "live" in parts:
        bench.live()
    elif "latency" in parts:
        bench.latency_only()


def main(argv: list[str] | None = None) -> int:
    plan, prefix, parts = parse_args(argv)
    preflight()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even if inherited ignored
        signal.signal(sig, interrupt)
    signal.signal(signal.SIGALRM, over_budget)
    signal.alarm(plan.budget)
    tmp = Path(tempfile.mkdtemp(prefix="ips-bench-"))
    lab = BenchLab(prefix)
    bench = Bench(lab, plan, tmp)
    report = Report(machine())
    rc = 0
    others = other_namespaces(prefix)
    try:
        execute(bench, lab, parts)
    except (KeyboardInterrupt, Budget, BenchError) as exc:
        rc = 130 if isinstance(exc, KeyboardInterrupt) else 1
        bench.notes.append(f"run stopped early: {str(exc) or 'interrupted'}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup must finish
        log("cleaning up")
        others |= other_namespaces(prefix)
        rc = cleanup(lab, tmp, bench) or rc
    Render(bench, report).all()
    report.notes = standing_notes(bench, others)
    print(report.render())
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(2)
    except json.JSONDecodeError as exc:
        print(f"bench: bad output from a tool: {exc}", file=sys.stderr)
        sys.exit(1)
