"""Smoke test of `make bench` (scripts/bench/bench.py) in its tiny mode: it runs,
prints the table, and leaves no namespace, process or temp dir behind.
No figure is checked: timings belong in the benchmark's output, not in tests."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "scripts" / "bench" / "bench.py"
# Its own lab: a concurrent `make bench` (ipsb) or test lab is not touched.
PREFIX = os.environ.get("IPS_BENCH_TEST_PREFIX", "ipsbt")
HEADERS = Path("/usr/include/libnetfilter_queue/libnetfilter_queue.h")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the benchmark needs root (namespaces, iptables, NFQUEUE)"
    for tool in ("gcc", "iptables", "ipset", "ping", "curl", "ss"):
        if shutil.which(tool) is None:
            return f"'{tool}' not installed"
    if not HEADERS.exists():
        return "libnetfilter-queue-dev not installed"
    return None


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _tmpdirs() -> set[str]:
    return set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "ips-bench-*")))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    new_tmpdirs: set[str]


@pytest.fixture(scope="module")
def tiny_run() -> Run:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    before = _tmpdirs()
    cp = subprocess.run([sys.executable, str(BENCH), "--tiny", "--prefix", PREFIX,
                         "--budget", "240"], capture_output=True, text=True, timeout=360,
                        cwd=REPO)
    return Run(cp.returncode, cp.stdout, cp.stderr, _tmpdirs() - before)


def test_prints_the_table(tiny_run: Run) -> None:
    assert tiny_run.returncode == 0, tiny_run.stderr[-2000:]
    out = tiny_run.stdout
    assert out.startswith("machine: ")
    for section in ("queue drain", "banned source flood", "latency", "daemon peak RSS",
                    "bulk TCP", "rules: HTTP conversations"):
        assert f"-- {section}" in out, out
    for row in ("C libnetfilter_queue accept-all", "Python NetfilterQueue accept-all",
                "ips-inline x1, clean UDP", "C accept-all, HTTP conversations",
                "ips-inline x1, HTTP conversations", "ips-inline x2 (--queue-balance), HTTP",
                "x1, clean UDP", "x1, attack mix", "reached the daemon", "added by ips-inline",
                "added by ips-inline, live.warm_interval = 0", "ips-inline CPU while idle",
                "iperf3 upload, conntrack only", "1,000 generated rules"):
        assert row in out, out


@pytest.mark.skipif(shutil.which("suricata") is None, reason="suricata not installed")
def test_suricata_drains_every_mix(tiny_run: Run) -> None:
    """Suricata's rows carry a rate and its verdict counts, and each ips-inline
    row names Suricata's ratio beside its own."""
    out = tiny_run.stdout
    for mix in ("clean UDP", "clean TCP conns", "HTTP conversations", "attack mix"):
        assert re.search(rf"^Suricata 7\.\S+ x1, {mix} +[\d.]+ kpps +[\d.]+x .*alerts$", out,
                         re.M), out
    assert re.search(r"^ips-inline x1, HTTP conversations.* Suricata [\d.]+x; ", out, re.M), out
    # the attack mix makes its rules fire; clean traffic does not
    assert re.search(r"^Suricata \S+ x1, attack mix .*dropped [1-9]\d*%, [\d,]+ alerts$", out,
                     re.M), out
    assert re.search(r"^Suricata \S+ x1, HTTP conversations .*dropped 0%, 0 alerts$", out,
                     re.M), out


def test_every_row_has_a_figure_or_a_reason(tiny_run: Run) -> None:
    rows = [line for line in tiny_run.stdout.splitlines()
            if line and not line.startswith(("--", "* ", "machine", "ips-inline 0", "measure"))]
    assert rows
    for line in rows:
        assert "n/a (" in line or any(ch.isdigit() for ch in line[46:]), line


def test_cleans_up(tiny_run: Run) -> None:
    assert not {ns for ns in _namespaces() if ns.startswith(f"{PREFIX}-")}
    assert not tiny_run.new_tmpdirs
