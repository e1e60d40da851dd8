"""Helpers shared by the end-to-end modules (test_e2e, test_hardening_netns):
the daemon in the lab's victim namespace, its metrics and bans, and
scenario.sh's attack roles. Not a test module."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from pathlib import Path

from lab import REPO, Lab

SCENARIO = str(REPO / "scripts" / "scenario.sh")
VICTIM_SH = str(REPO / "scripts" / "victim.sh")
IPS = str(REPO / ".venv" / "bin" / "ips-inline")
_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Victim:
    """The daemon in the victim namespace, restartable. `live` is added to the
    [live] section, `extra` appended as further TOML sections."""

    def __init__(self, lab: Lab, workdir: Path, extra: str = "", live: str = "",
                 host: str = "victim") -> None:
        self.lab = lab
        self.host = host  # "victim2" in a lab made with victim2=True
        self.workdir = workdir
        self.config = workdir / "ips.toml"
        self.eve = workdir / "eve.json"
        self.log = workdir / "daemon.log"
        self.write_config(extra, live)
        self.proc: subprocess.Popen | None = None
        self._log_start = 0

    def write_config(self, extra: str = "", live: str = "") -> None:
        self.config.write_text(
            f'[live]\neve_path = "{self.eve}"\nstate_path = "{self.workdir / "state.json"}"\n'
            f'{live}\n[metrics]\nlisten = "127.0.0.1"\nport = 9100\n{extra}')

    def ips(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.exec(self.host, [IPS, "--config", str(self.config), *args], check=check)

    def start(self, env: dict[str, str] | None = None) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as log:
            self.proc = self.lab.popen(self.host, [VICTIM_SH, "ips"], stdout=log, stderr=log,
                                       env={**self.lab._script_env(), **(env or {}),
                                            "IPS_CONFIG": str(self.config)})
        self.wait_log("inline on NFQUEUE", 20)

    def wait_log(self, text: str, timeout: float) -> None:
        """Wait until the daemon's log (this run's part) contains `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.run_log():
            assert self.proc is not None and self.proc.poll() is None, self.run_log()
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.run_log()}"
            time.sleep(0.1)

    def run_log(self) -> str:
        """The log since the last start()."""
        return self.log.read_text()[self._log_start:]

    def stop(self, sig: str = "TERM") -> None:
        assert self.proc is not None
        self.lab.exec(self.host, ["kill", f"-{sig}", str(self.proc.pid)])
        self.proc.wait(10)
        self.lab.kill(self.proc)

    def signal(self, sig: str) -> None:
        assert self.proc is not None
        self.lab.exec(self.host, ["kill", f"-{sig}", str(self.proc.pid)])

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the daemon, in KiB (namespaces share the pid space)."""
        assert self.proc is not None
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """User+system CPU time of the daemon and every process under it."""
        assert self.proc is not None
        stats = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # exited meanwhile
                continue
            stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        tree = {self.proc.pid}
        for _ in range(4):  # victim.sh -> ips-inline -> workers
            tree |= {pid for pid, (ppid, _t) in stats.items() if ppid in tree}
        ticks = sum(stats[pid][1] for pid in tree if pid in stats)
        return ticks / os.sysconf("SC_CLK_TCK")

    def idle_cpu_share(self, seconds: float = 2.0) -> float:
        """CPU the daemon's processes used while no traffic came, per second."""
        before = self.cpu_seconds()
        time.sleep(seconds)
        return (self.cpu_seconds() - before) / seconds

    def bans(self) -> dict[str, str]:
        return {b["ip"]: b["detector"] for b in json.loads(self.ips("bans", "--json").stdout)}

    def metrics(self) -> str:
        return self.lab.exec(self.host, ["curl", "-sf", "http://127.0.0.1:9100/metrics"]).stdout

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        line = f"{name}{{{want}}} " if labels else f"{name} "
        for row in self.metrics().splitlines():
            if row.startswith(line):
                return float(row.split()[-1])
        raise AssertionError(f"{line!r} not in /metrics")

    def metric_sum(self, name: str) -> float:
        """Sum of every sample of `name`, whatever its labels."""
        rows = [r for r in self.metrics().splitlines() if re.match(rf"{name}[{{ ]", r)]
        assert rows, f"{name} not in /metrics"
        return sum(float(r.split()[-1]) for r in rows)

    def chain_counters(self) -> dict[str, int]:
        out = self.lab.exec(self.host, ["iptables", "-xvnL", "IPS_INLINE"]).stdout
        counters = {}
        for row in out.splitlines():
            if "match-set" in row:
                counters["ban_drop"] = int(row.split()[0])
            elif "connmark match" in row:
                counters["bypassed"] = int(row.split()[0])
            elif "NFQUEUE" in row:
                counters["queued"] = int(row.split()[0])
        return counters


def label_values(metrics_text: str) -> set[str]:
    """Every label value in a Prometheus text exposition."""
    values: set[str] = set()
    for row in metrics_text.splitlines():
        if not row.startswith("#") and "{" in row:
            values.update(v for _k, v in _LABELS.findall(row[row.index("{"):]))
    return values


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def scenario_env(lab: Lab, shared: Path) -> dict[str, str]:
    return {**lab._script_env(), "VICTIM": lab.victim4, "ATTACK_NET": lab.victim4.rsplit(".", 1)[0],
            "IFACE": lab.iface, "SCENARIO_DIR": str(shared)}


def attack(lab: Lab, name: str, tmp_path: Path) -> str:
    res = lab.exec("attacker", [SCENARIO, "attack", name], env=scenario_env(lab, tmp_path),
                   check=False, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def source(lab: Lab, n: int) -> str:
    return f"{lab.victim4.rsplit('.', 1)[0]}.{n}"
