"""Queue consumers under test, each started in the victim namespace.

- C accept-all (nfq_accept.c) and Python NetfilterQueue accept-all
  (nfq_py_accept.py) behind one plain rule: INPUT -s 198.18.0.0/15 -> NFQUEUE 0.
- ips-inline: `install-rules` and `run` with a bench config in a temp dir.
- Suricata: suricata.py.
Each is started under `taskset -c CPUS` when given CPUS (the drain tests pin
one-worker consumers to one core, away from the bench's queue poller).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlab import REPO, BenchError, BenchLab

from ips_inline.config import Config

HERE = Path(__file__).resolve().parent
IPS = REPO / ".venv" / "bin" / "ips-inline"
# Every mix's sources (mixes.py): the accept-all consumers see the same packets as ips-inline.
PLAIN_RULE = ["INPUT", "-s", "198.18.0.0/15", "-j", "NFQUEUE", "--queue-num", "0"]
# In the security table (after filter's INPUT): accepted drain packets end here.
SINK_RULE = ["INPUT", "-s", "198.18.0.0/15", "-j", "DROP"]
METRICS_PORT = 9187
# Flood thresholds for the clean drain mixes: a backlog drained at full speed
# puts one source's SYNs closer together than any real client would, and
# inspection, not the ban path, is what those rows time.
RAISED = 1_000_000
DEFAULTS = Config().detectors


@dataclass
class Consumer:
    name: str
    proc: subprocess.Popen[Any]
    queues: tuple[int, ...] = (0,)


def plain_rule(lab: BenchLab, op: str) -> None:
    """op: -A (add) or -D (delete) the plain NFQUEUE rule in the victim."""
    lab.run("victim", ["iptables", "-w", op, *PLAIN_RULE])


def pinned(argv: list[Any], cpus: str | None) -> list[Any]:
    """argv under `taskset -c cpus` (taskset execs: the pid stays argv's)."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def start_c(lab: BenchLab, binary: Path, maxlen: int, rcvbuf: int, queue: int = 0,
            cpus: str | None = None) -> Consumer:
    proc = lab.popen("victim", pinned([binary, "-q", queue, "-m", maxlen, "-b", rcvbuf], cpus))
    lab.wait_bound((queue,), proc)
    return Consumer("C libnetfilter_queue", proc, (queue,))


def start_py(lab: BenchLab, maxlen: int, rcvbuf: int, queue: int = 0,
             cpus: str | None = None) -> Consumer:
    proc = lab.popen("victim", pinned([sys.executable, HERE / "nfq_py_accept.py", queue,
                                       maxlen, rcvbuf], cpus))
    lab.wait_bound((queue,), proc)
    return Consumer("Python NetfilterQueue", proc, (queue,))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (`ip netns exec` execs: the daemon's pid)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return f'"{v}"' if isinstance(v, str) else str(v)

    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items())
                   + "\n" for name, body in sections.items() if body)


@dataclass
class IpsSettings:
    """What differs from ips-inline's built-in defaults in one bench run."""

    drain: bool = False  # fail-open off, 100k queue, big netlink buffer
    maxlen: int = 100000
    rcvbuf: int = 128 << 20
    workers: int = 1
    bypass: bool = True
    warm_interval: float | None = None  # None: the built-in default
    floods_raised: bool = False  # syn_flood and icmp_flood thresholds at RAISED
    cpus: str | None = None  # taskset -c CPUS for the daemon (and its workers)

    def config(self, workdir: Path) -> dict[str, dict[str, Any]]:
        live: dict[str, Any] = {"eve_path": str(workdir / "eve.json"),
                                "state_path": str(workdir / "state.json")}
        if self.drain:
            live |= {"fail_open": False, "queue_maxlen": self.maxlen, "sock_rcvbuf": self.rcvbuf}
        if self.workers != 1:
            live["workers"] = self.workers
        if self.warm_interval is not None:
            live["warm_interval"] = self.warm_interval
        engine = {} if self.bypass else {"bypass_after_packets": 0}
        floods = {"detectors.syn_flood": {"threshold": RAISED, "half_open_threshold": RAISED},
                  "detectors.icmp_flood": {"threshold": RAISED}} if self.floods_raised else {}
        return {"live": live, "engine": engine,
                "metrics": {"listen": "127.0.0.1", "port": METRICS_PORT}, **floods}


@dataclass
class Ips:
    """One ips-inline daemon in the victim, with its own config and state dir."""

    lab: BenchLab
    workdir: Path
    settings: IpsSettings = field(default_factory=IpsSettings)
    proc: subprocess.Popen[Any] | None = None
    runs: int = 0

    @property
    def cfg_path(self) -> Path:
        return self.workdir / "bench.toml"

    def cli(self, *args: str, timeout: float = 60) -> str:
        return self.lab.run("victim", [IPS, "--config", self.cfg_path, *args],
                            timeout=timeout).stdout

    def start(self) -> Consumer:
        """Fresh state, sets and rules, then the daemon; returns once every queue is bound."""
        self.runs += 1
        run_dir = self.workdir / f"run{self.runs}"
        run_dir.mkdir(parents=True)
        self.cfg_path.write_text(toml_text(self.settings.config(run_dir)))
        self.cli("uninstall-rules", "--destroy-sets")
        self.cli("install-rules")
        log = open(run_dir / "daemon.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = self.lab.popen("victim", pinned([IPS, "--config", self.cfg_path, "run"],
                                                    self.settings.cpus), stderr=log, stdout=log)
        log.close()
        queues = tuple(range(self.settings.workers))
        try:
            self.lab.wait_bound(queues, self.proc)
        except BenchError as exc:
            raise BenchError(f"{exc}; daemon log: {self.log_tail()}") from None
        time.sleep(0.3)  # enforcer thread and metrics server up
        return Consumer(f"ips-inline x{self.settings.workers}", self.proc, queues)

    def idle_cpu(self, seconds: float) -> float:
        """Share of a core the daemon used over `seconds` with no traffic."""
        assert self.proc is not None
        before = cpu_seconds(self.proc.pid)
        time.sleep(seconds)
        return (cpu_seconds(self.proc.pid) - before) / seconds

    def log_tail(self) -> str:
        path = self.workdir / f"run{self.runs}" / "daemon.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(lines[-2:]) or "(empty)"

    def stop(self) -> None:
        """Daemon down, rules and ban sets gone (a clean victim for the next test)."""
        if self.proc is not None:
            self.lab.kill(self.proc, timeout=10)
            self.proc = None
        if self.cfg_path.exists():
            self.cli("uninstall-rules", "--destroy-sets")

    def scrape(self) -> list[str]:
        cp = self.lab.run("victim", ["curl", "-s", "-m", "3",
                                     f"http://127.0.0.1:{METRICS_PORT}/metrics"], check=False)
        return cp.stdout.splitlines()

    def histogram(self) -> list[tuple[float, float]]:
        """Cumulative buckets (le seconds, count) of the daemon's verdict-time histogram."""
        out = []
        for line in self.scrape():
            if line.startswith("ips_inline_verdict_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out.append((float(le), float(line.rpartition(" ")[2])))
        return out

    def metrics(self) -> dict[str, float]:
        """Daemon counters from its Prometheus endpoint: packets by reason, and totals."""
        out: dict[str, float] = {"packets": 0.0}
        for line in self.scrape():
            if line.startswith("ips_inline_packets_total{"):
                labels, _, val = line.rpartition(" ")
                reason = labels.split('reason="', 1)[-1].split('"', 1)[0]
                verdict = labels.split('verdict="', 1)[-1].split('"', 1)[0]
                out[f"{verdict}/{reason}"] = out.get(f"{verdict}/{reason}", 0.0) + float(val)
                out["packets"] += float(val)
        return out

    def counters(self) -> dict[str, int]:
        """Packet counters of the ban DROP rule and the NFQUEUE rule in our chain."""
        text = self.lab.run("victim", ["iptables", "-w", "-L", "IPS_INLINE", "-v", "-x",
                                       "-n"]).stdout
        out = {"ban_drop": 0, "nfqueue": 0}
        for line in text.splitlines():
            f = line.split()
            if len(f) > 2 and f[2] == "DROP" and "match-set" in line:
                out["ban_drop"] += int(f[0])
            elif len(f) > 2 and f[2] == "NFQUEUE":
                out["nfqueue"] += int(f[0])
        return out


def workers_supported() -> bool:
    text = (REPO / "ips_inline" / "daemon.py").read_text()
    return "queue-balance" in text or "workers" in text
