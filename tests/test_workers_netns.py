"""live.workers = 2 in the lab: two queues on --queue-balance, one engine per
worker, bans shared through the kernel set, figures summed on one endpoint,
a dead worker restarted, a bad reload rejected once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_lab import lab_fixture  # noqa: F401  (the `lab` fixture)
from lab import Lab
from test_e2e import SCENARIO, Victim, scenario_env, source

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def victim(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    lab.start_victim_http()
    v = Victim(lab, tmp_path_factory.mktemp("workers"))
    v.config.write_text(v.config.read_text().replace("[live]\n", "[live]\nworkers = 2\n"))
    v.start()
    yield v
    lab.kill_all()


def queues(lab: Lab) -> dict[int, int]:
    """Bound queue number -> portid (the worker's pid) in the victim."""
    text = lab.exec("victim", ["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout
    return {int(f[0]): int(f[1]) for f in (line.split() for line in text.splitlines())}


def test_two_queues_balanced(lab: Lab, victim: Victim) -> None:
    assert sorted(queues(lab)) == [0, 1]
    rule = lab.exec("victim", ["iptables", "-S", "IPS_INLINE"]).stdout
    assert "--queue-balance 0:1" in rule


def test_idle_supervisor_and_workers_sleep(victim: Victim) -> None:
    assert victim.idle_cpu_share() < 0.1  # three processes; a spinning one uses ~1.0


def test_attacks_banned_and_figures_summed(lab: Lab, victim: Victim, tmp_path: Path) -> None:
    for name in ("icmp_flood", "scan_null"):
        res = lab.exec("attacker", [SCENARIO, "attack", name], env=scenario_env(lab, tmp_path),
                       check=False, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    bans = victim.bans()
    assert bans[source(lab, 31)] == "icmp_flood" and bans[source(lab, 34)] == "null_scan"
    time.sleep(1.5)  # workers report once a second
    assert victim.metric("ips_inline_bans_total", detector="icmp_flood") == 1
    assert victim.metric("ips_inline_bans_total", detector="null_scan") == 1
    assert victim.metric("ips_inline_queue_packets_total") > 0


def test_a_dead_worker_is_restarted(lab: Lab, victim: Victim) -> None:
    before = queues(lab)
    lab.exec("victim", ["kill", "-KILL", str(before[0])])
    deadline = time.monotonic() + 10
    while queues(lab).get(0, before[0]) == before[0]:
        assert time.monotonic() < deadline, "worker 0 was not restarted"
        time.sleep(0.2)
    assert queues(lab)[1] == before[1]
    lab.exec("client", ["curl", "-sf", "-o", "/dev/null", "-m", "3", f"http://{lab.victim4}/"])


def test_bad_reload_rejected_once(lab: Lab, victim: Victim) -> None:
    good = victim.config.read_text()
    victim.config.write_text("[engine\n")
    try:
        assert victim.proc is not None
        lab.exec("victim", ["kill", "-HUP", str(victim.proc.pid)])
        time.sleep(1.5)
        assert victim.metric("ips_inline_config_reloads_total", result="failure") == 1
        assert sorted(queues(lab)) == [0, 1]
    finally:
        victim.config.write_text(good)


def test_stop_unbinds_every_queue(lab: Lab, victim: Victim) -> None:
    victim.stop("TERM")
    assert queues(lab) == {}
    lab.exec("client", ["curl", "-sf", "-o", "/dev/null", "-m", "3", f"http://{lab.victim4}/"])
