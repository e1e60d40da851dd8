"""End to end: the real daemon inline in the lab's victim namespace, real
NFQUEUE and ipset, real attack tools (hping3, nmap, curl) from the attacker,
a client browsing and pinging once a second throughout.

The attacks are scenario.sh's, the same ones `make demo` plays; each uses its
own source address (ATTACK_NET.31 ...), so each ban names one detector.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_lab import lab_fixture  # noqa: F401  (the `lab` fixture)
from e2e_helpers import IPS, SCENARIO, Victim, attack, scenario_env, source
from eve_schema import check_records
from lab import Lab

pytestmark = pytest.mark.netns
# The attacks' sources (scenario.sh's numbering) and the detector that bans each.
BANNED_BY = {31: "icmp_flood", 32: "syn_flood", 33: "port_scan", 34: "null_scan",
             35: "fin_scan", 36: "xmas_scan", 37: "sqli"}


@pytest.fixture(scope="module")
def victim(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    lab.start_victim_http()
    v = Victim(lab, tmp_path_factory.mktemp("victim"))
    v.start()
    yield v
    lab.kill_all()


@pytest.fixture(scope="module")
def client(lab: Lab, victim: Victim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """scenario.sh's client role, browsing and pinging all through the module."""
    shared = tmp_path_factory.mktemp("scenario")
    proc = lab.popen("client", [SCENARIO, "client"], env=scenario_env(lab, shared),
                     stdout=subprocess.PIPE, text=True)
    yield shared
    (shared / "stop").touch()
    proc.wait(30)


def test_daemon_refuses_a_second_binding_and_missing_rules(lab: Lab, victim: Victim) -> None:
    res = victim.ips("run", check=False)
    assert res.returncode == 2 and "already bound" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = lab.exec("client", [IPS, "--config", str(victim.config), "run"], check=False)
    assert res.returncode == 2 and "install-rules" in res.stderr


def test_an_idle_daemon_sleeps(victim: Victim) -> None:
    # A closed signal wake-up socket once kept the loop spinning at 100% CPU.
    assert victim.idle_cpu_share() < 0.1


def test_icmp_flood_is_banned_and_then_dropped_in_the_kernel(lab: Lab, victim: Victim,
                                                             client: Path, tmp_path: Path) -> None:
    out = attack(lab, "icmp_flood", tmp_path)
    assert "STOPPED" in out
    assert victim.bans()[source(lab, 31)] == "icmp_flood"
    before = victim.chain_counters()
    lab.exec("attacker", ["hping3", "--icmp", "-c", "200", "-i", "u1000", "-a", source(lab, 31),
                          lab.victim4], check=False, timeout=30)
    after = victim.chain_counters()
    assert after["ban_drop"] - before["ban_drop"] >= 200
    # The daemon saw only the client's few packets meanwhile, not the flood.
    assert after["queued"] - before["queued"] < 50


def test_syn_flood_is_banned(lab: Lab, victim: Victim, client: Path, tmp_path: Path) -> None:
    attack(lab, "syn_flood", tmp_path)
    assert victim.bans()[source(lab, 32)] == "syn_flood"


@pytest.mark.parametrize(("name", "n", "detector"), [
    ("scan_syn", 33, "port_scan"), ("scan_null", 34, "null_scan"),
    ("scan_fin", 35, "fin_scan"), ("scan_xmas", 36, "xmas_scan")])
def test_nmap_scans_are_banned_and_see_filtered_ports(lab: Lab, victim: Victim, client: Path,
                                                      tmp_path: Path, name: str, n: int,
                                                      detector: str) -> None:
    out = attack(lab, name, tmp_path)
    assert victim.bans()[source(lab, n)] == detector
    filtered = re.search(r"nmap reports (\d+) of 1000 ports filtered", out)
    assert filtered and int(filtered.group(1)) >= 900, out


def test_sqli_gets_no_answer_then_a_ban_and_metrics_move(lab: Lab, victim: Victim, client: Path,
                                                         tmp_path: Path) -> None:
    alerts = victim.metric("ips_inline_alerts_total", detector="sqli")
    drops = victim.metric("ips_inline_packets_total", verdict="drop", reason="detector")
    out = attack(lab, "sqli", tmp_path)
    assert "0 of 4 answered" in out
    assert victim.bans()[source(lab, 37)] == "sqli"
    assert victim.metric("ips_inline_alerts_total", detector="sqli") >= alerts + 3
    assert victim.metric("ips_inline_packets_total", verdict="drop", reason="detector") >= drops + 3
    assert victim.metric("ips_inline_bans_active") >= 1
    records = [json.loads(line) for line in victim.eve.read_text().splitlines()]
    assert any(r["event_type"] == "ban" and r["src_ip"] == source(lab, 37) for r in records)


def test_unban_lets_the_source_back_in(lab: Lab, victim: Victim) -> None:
    ip = source(lab, 37)
    assert victim.ips("unban", ip).returncode == 0
    time.sleep(1.5)  # the daemon follows the store within a second
    lab.exec("attacker", ["curl", "-sf", "-o", "/dev/null", "-m", "3", "--interface", ip,
                          f"http://{lab.victim4}/"])
    assert ip not in victim.bans()


def test_bans_outlive_a_restart_and_a_killed_daemon_leaves_traffic_flowing(
        lab: Lab, victim: Victim, client: Path) -> None:
    banned = source(lab, 31)
    victim.stop("KILL")
    # No daemon: the queue rule bypasses, so the client still gets answers,
    # and the ban stays in the kernel.
    lab.exec("client", ["curl", "-sf", "-o", "/dev/null", "-m", "3", f"http://{lab.victim4}/"])
    assert lab.exec("attacker", ["ping", "-c", "1", "-W", "1", "-I", banned, lab.victim4],
                    check=False).returncode != 0
    victim.start()
    assert "restored" in victim.log.read_text()
    assert victim.bans()[banned] == "icmp_flood"
    assert lab.exec("attacker", ["ping", "-c", "1", "-W", "1", "-I", banned, lab.victim4],
                    check=False).returncode != 0


def test_an_open_tcp_session_survives_a_killed_and_restarted_daemon(lab: Lab,
                                                                    victim: Victim) -> None:
    """A 2 MB download at 400 kB/s spans kill -9 and restart: its packets bypass
    (connmark) or are picked up mid-stream by the new daemon; none is refused."""
    url = f"http://{lab.victim4}/download?size=2000000"
    proc = lab.popen("client", ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}",
                                "--limit-rate", "400k", "-m", "30", url],
                     stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    victim.stop("KILL")
    time.sleep(1.0)
    victim.start()
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0 and out == "2000000"


def test_manual_ban_and_bad_addresses(lab: Lab, victim: Victim) -> None:
    assert victim.ips("ban", source(lab, 39), "--duration", "60").returncode == 0
    assert victim.bans()[source(lab, 39)] == "manual"
    for bad in ("1.2.3.4; touch x", "$(id)", "-F", "fe80::1%eth0;x"):
        res = victim.ips("ban", "--", bad, check=False)  # "--": so "-F" reaches the parser
        assert res.returncode == 2 and "invalid IP address" in res.stderr


def test_bulk_download_is_bypassed_after_its_request(lab: Lab, victim: Victim) -> None:
    before = victim.chain_counters()
    url = f"http://{lab.victim4}/download?size=30000000"
    res = lab.exec("client", ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}",
                              "-m", "60", url], timeout=90)
    assert res.stdout == "30000000"
    after = victim.chain_counters()
    # The client's ACKs: the first 32 are queued, the rest skip userspace.
    bypassed, queued = (after[k] - before[k] for k in ("bypassed", "queued"))
    print(f"bypassed {bypassed}, queued {queued}")
    assert bypassed > 200 and queued < 100


def test_client_never_lost_a_request(lab: Lab, client: Path) -> None:
    (client / "stop").touch()
    deadline = time.monotonic() + 15
    while not (client / "client.result").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    ok, lost, pings, ping_lost = map(int, (client / "client.result").read_text().split())
    assert ok > 20 and lost == 0 and pings > 20 and ping_lost == 0


def test_every_eve_record_the_lab_wrote_is_valid(victim: Victim) -> None:
    """Against Suricata's schema (tests/eve_schema.py): the alerts as they are,
    the other records without their own object; community_id as the
    communityid library computes it; HTTP alerts with url and hostname."""
    records = [json.loads(line) for line in victim.eve.read_text().splitlines() if line]
    kinds = {r["event_type"] for r in records}
    assert {"alert", "ban", "unban"} <= kinds, kinds
    assert any(r.get("app_proto") == "http" for r in records)
    errors = check_records(records)
    assert not errors, "\n".join(errors[:20])


def test_explain_names_the_detector_behind_every_ban(lab: Lab, victim: Victim) -> None:
    for n, detector in BANNED_BY.items():
        res = victim.ips("explain", source(lab, n), "--json")
        out = json.loads(res.stdout)
        bans = [b for b in out["bans"] if b["detector"] == detector]
        assert bans, f"{source(lab, n)}: no {detector} ban in {out['bans']}"
        alerts = bans[-1]["alerts"]
        assert alerts and {a["detector"] for a in alerts} == {detector}, alerts
        assert alerts[-1]["offence"] == alerts[-1]["ban_after"]
        if detector == "sqli":
            assert all(a["request"].startswith("GET /") for a in alerts)
            assert bans[-1]["ended"]["reason"] == "manual"  # test_unban_lets_the_source_back_in
            assert not out["banned"]
        else:
            assert out["banned"] and out["state"]["detector"] == detector
        if detector == "port_scan":
            assert len(alerts[-1]["ports"]) > 20
    manual = json.loads(victim.ips("explain", source(lab, 39), "--json").stdout)
    assert manual["banned"] and manual["state"]["origin"] == "manual" and not manual["bans"]
    text = victim.ips("explain", source(lab, 37)).stdout
    assert f"{source(lab, 37)}: not banned now" in text and "sqli (origin local)" in text
    never = victim.ips("explain", source(lab, 99))
    assert never.returncode == 0 and "never seen" in never.stdout
