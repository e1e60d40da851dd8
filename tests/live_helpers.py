"""Helpers of the live modules (test_adversarial_netns, test_real_traffic_netns,
test_rules_netns): the daemon started per test or module and always removed,
extra attacker addresses, tests/lab_probe.py run in a namespace, EVE reads.
Not a test module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Victim, source
from lab import REPO, Lab

LAB_PROBE = str(REPO / "tests" / "lab_probe.py")
SQLI_ENC = "1%27%20OR%20%271%27%3D%271"  # 1' OR '1'='1, percent-encoded

StartDaemon = Callable[..., Victim]


@pytest.fixture(scope="module", name="web")
def web_fixture(lab: Lab) -> Lab:
    """The victim's web server for a module's tests; killed by lab.down()."""
    lab.start_victim_http()
    return lab


@contextmanager
def daemons(lab: Lab, workdir: Path) -> Iterator[StartDaemon]:
    """start(extra=..., live=...) -> a running Victim in `workdir`; at the end
    every daemon started is killed and the rules and ban sets removed, also
    on failure."""
    started: list[Victim] = []

    def start(extra: str = "", live: str = "", env: dict[str, str] | None = None) -> Victim:
        victim = Victim(lab, workdir, extra, live)
        started.append(victim)
        victim.start(env)
        return victim

    try:
        yield start
    finally:
        for victim in started:
            if victim.proc is not None:  # a test may have left it SIGSTOPped
                lab.exec("victim", ["kill", "-CONT", str(victim.proc.pid)], check=False)
                lab.kill(victim.proc)
        if started:
            started[0].ips("uninstall-rules", "--destroy-sets", check=False)


@contextmanager
def attacker_sources(lab: Lab, *numbers: int) -> Iterator[list[str]]:
    """Extra addresses ATTACK_NET.n on the attacker's interface, removed at the end."""
    added = []
    try:
        for n in numbers:
            ip = source(lab, n)
            lab.exec("attacker", ["ip", "addr", "add", f"{ip}/32", "dev", lab.iface])
            added.append(ip)
        yield added
    finally:
        for ip in added:
            lab.exec("attacker", ["ip", "addr", "del", f"{ip}/32", "dev", lab.iface],
                     check=False)


def probe_argv(*args: str) -> list[str]:
    """argv of a lab_probe.py subcommand (for lab.popen)."""
    return [sys.executable, LAB_PROBE, *args]


def probe(lab: Lab, host: str, *args: str, stdin: bytes | None = None,
          timeout: float = 60) -> Any:
    """Run a lab_probe.py subcommand in `host`; its JSON output."""
    res = lab.exec(host, probe_argv(*args), input=stdin, text=False,
                   timeout=timeout, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return json.loads(res.stdout.decode().strip().splitlines()[-1])


def http_raw(lab: Lab, host: str, request: bytes, *, source: str | None = None,
             port: int = 80, timeout: float = 3.0) -> dict[str, Any]:
    """Send raw request bytes from `host` to the victim; the probe's result
    (status None: no answer)."""
    extra = ["--source", source] if source else []
    return probe(lab, host, "http", lab.victim4, str(port), "--timeout", str(timeout), *extra,
                 stdin=request, timeout=timeout + 20)


def get(path: str, *, headers: str = "", close: bool = True) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: victim\r\n{headers}{conn}\r\n".encode()


def curl(lab: Lab, host: str, *args: str, timeout: int = 5) -> subprocess.CompletedProcess[str]:
    return lab.exec(host, ["curl", "-s", "-m", str(timeout), *args], check=False,
                    timeout=timeout + 15)


def answered(lab: Lab, host: str, url: str, *args: str, timeout: int = 3) -> bool:
    """Did the victim answer (any HTTP status) within `timeout`?"""
    res = curl(lab, host, "-o", "/dev/null", "-w", "%{http_code}", *args, url, timeout=timeout)
    return res.returncode == 0 and res.stdout not in ("", "000")


def eve_records(victim: Victim, event_type: str | None = None) -> list[dict[str, Any]]:
    if not victim.eve.exists():
        return []
    records = [json.loads(line) for line in victim.eve.read_text().splitlines() if line]
    return [r for r in records if event_type is None or r["event_type"] == event_type]


def alerts_from(victim: Victim, ip: str) -> list[dict[str, Any]]:
    return [r for r in eve_records(victim, "alert") if r["src_ip"] == ip]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.1)


@contextmanager
def raw_counter(lab: Lab, tag: str, *match: str) -> Iterator[Callable[[], int]]:
    """A reader of how many packets matching `match` arrived on the victim's
    interface, counted in the raw table's PREROUTING (before conntrack, our
    chain and the queue); the counting rule is removed at the end."""
    rule = ["PREROUTING", "-i", lab.iface, *match, "-m", "comment", "--comment", tag]
    lab.exec("victim", ["iptables", "-t", "raw", "-A", *rule])

    def read() -> int:
        rows = lab.exec("victim", ["iptables", "-t", "raw", "-xvnL", "PREROUTING"]).stdout
        for row in rows.splitlines():
            if f"/* {tag} */" in row:
                return int(row.split()[0])
        raise AssertionError(f"raw counter {tag} not found:\n{rows}")

    try:
        yield read
    finally:
        lab.exec("victim", ["iptables", "-t", "raw", "-D", *rule], check=False)
