"""End to end with the real daemon and the real CrowdSec LAPI (Debian's 1.4.6):
two protected hosts in the namespace lab (victim and victim2, LAB_VICTIM2=1),
one LAPI for both, running in the victim's namespace on its lab address.

victim2 whitelists the LAPI host (its replies skip the queue, and a decision
against it could cut victim2 off from the unban); the victim whitelists one
source (WHITELISTED) so that a decision for it can be shown to stay unapplied.
LAPI, the daemons and the namespaces are removed at the end, also on failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest_lab import TEST_PREFIX, lab_skip_reason
from e2e_helpers import Victim, attack, source
from lab import Lab
from lapi import Lapi, skip_reason

pytestmark = pytest.mark.netns
WITHIN = 15.0  # seconds the issue allows for a decision to cross
POLL = 1.0
WHITELISTED = 39  # host part of a source the victim whitelists
EXTRA_SOURCES = (33, 36, 39, 50)  # scenario.sh adds 31..38 itself; these are ours


def eventually(what: Callable[[], object], timeout: float = WITHIN, step: float = 0.25) -> float:
    """Seconds until what() is true; fails after `timeout`."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < timeout, f"not within {timeout}s"
        time.sleep(step)
    return time.monotonic() - start


def reaches(lab: Lab, src: str, host: str = "victim") -> bool:
    """The victim (or victim2) answers `src`, by ping and by HTTP."""
    fam = 6 if ":" in src else 4
    dst = lab.addr(host, fam)
    ping = lab.exec("attacker", ["ping", f"-{fam}", "-c", "1", "-W", "1", "-I", src, dst],
                    check=False)
    url = f"http://[{dst}]/" if fam == 6 else f"http://{dst}/"
    curl = lab.exec("attacker", ["curl", "-sf", "-o", "/dev/null", "-m", "2", "--interface", src,
                                 url], check=False)
    return ping.returncode == 0 and curl.returncode == 0


def in_set(lab: Lab, host: str, name: str, value: str) -> bool:
    out = lab.exec(host, ["ipset", "list", name], check=False).stdout
    return any(line.split()[:1] == [value] for line in out.splitlines())


def set_timeout(lab: Lab, host: str, name: str, value: str) -> int:
    for line in lab.exec(host, ["ipset", "list", name]).stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == value and "timeout" in parts:
            return int(parts[parts.index("timeout") + 1])
    raise AssertionError(f"{value} not in {name}")


def crowdsec_section(lapi: Lapi, key: str, machine: str, password: Path, whitelist: list[str]
                     ) -> str:
    return (f"[engine]\nwhitelist = {json.dumps(whitelist)}\n"
            f'[crowdsec]\nlapi_url = "{lapi.url}"\napi_key = "{key}"\n'
            f'machine_id = "{machine}"\npassword_file = "{password}"\n'
            f"poll_interval = {POLL}\nretry_max = 2.0\ntimeout = 2.0\n")


class Fleet:
    def __init__(self, lab: Lab, lapi: Lapi, one: Victim, two: Victim) -> None:
        self.lab, self.lapi, self.one, self.two = lab, lapi, one, two

    def lapi_decisions(self, value: str) -> list[dict]:
        return [d for d in self.lapi.decisions() if d["value"] == value]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = lab_skip_reason() or skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(TEST_PREFIX, victim2=True)
    lapi_dir = tmp_path_factory.mktemp("lapi")
    try:
        lab.down()
        lab.up()
        yield _start(lab, tmp_path_factory, lapi_dir)
    finally:
        lab.down()  # kills LAPI and both daemons too: every process in the namespaces
        shutil.rmtree(lapi_dir, ignore_errors=True)  # its database and credentials


def _start(lab: Lab, tmp: pytest.TempPathFactory, lapi_dir: Path) -> Fleet:
    lapi = Lapi(lab, "victim", lab.victim4, lapi_dir)
    daemons = []
    for host, whitelist in (("victim", [f"{source(lab, WHITELISTED)}/32"]),
                            ("victim2", [f"{lab.victim4}/32"])):
        work = tmp.mktemp(host)
        password = work / "lapi.password"
        password.write_text(lapi.add_machine(f"ips-inline-{host}"))
        password.chmod(0o600)
        key = lapi.add_bouncer(f"ips-inline-{host}")
        daemons.append(Victim(lab, work, extra=crowdsec_section(
            lapi, key, f"ips-inline-{host}", password, ["127.0.0.0/8", "::1/128", *whitelist]),
            host=host))
    lapi.start()
    for host in ("victim", "victim2"):
        lab.start_victim_http(host=host)
    for daemon in daemons:
        daemon.start()
        daemon.wait_log("crowdsec: LAPI", 10)
    for n in EXTRA_SOURCES:
        lab.exec("attacker", ["ip", "addr", "add", f"{source(lab, n)}/32", "dev", lab.iface],
                 check=False)
    lab.exec("attacker", ["ip", "addr", "add", f"{lab.net6.split('/')[0]}42/128", "dev",
                          lab.iface, "nodad"], check=False)
    return Fleet(lab, lapi, *daemons)


def test_both_daemons_pull_from_lapi(fleet: Fleet) -> None:
    for daemon in (fleet.one, fleet.two):
        eventually(lambda d=daemon: d.metric("ips_inline_crowdsec_pulls_total", result="ok") >= 2)
        assert daemon.metric("ips_inline_crowdsec_lapi_up") == 1
    assert "Traceback" not in fleet.one.run_log() + fleet.two.run_log()


def test_an_ip_decision_reaches_both_kernels_and_cuts_the_source_off(fleet: Fleet) -> None:
    lab, ip = fleet.lab, source(fleet.lab, 33)
    assert reaches(lab, ip) and reaches(lab, ip, "victim2")
    fleet.lapi.cscli("decisions", "add", "--ip", ip, "--duration", "2h")
    took = eventually(lambda: in_set(lab, "victim", "ips_inline_ban4", ip)
                      and in_set(lab, "victim2", "ips_inline_ban4", ip))
    assert took < WITHIN
    assert 7100 <= set_timeout(lab, "victim", "ips_inline_ban4", ip) <= 7200
    assert not reaches(lab, ip) and not reaches(lab, ip, "victim2")
    bans = {b["ip"]: b for b in json.loads(fleet.one.ips("bans", "--json").stdout)}
    assert bans[ip]["origin"] == "crowdsec:cscli"
    assert fleet.one.metric("ips_inline_crowdsec_decisions", origin="cscli", scope="Ip") >= 1


def test_range_decisions_v4_and_v6(fleet: Fleet) -> None:
    lab = fleet.lab
    v4, v6 = source(lab, 50), f"{lab.net6.split('/')[0]}42"
    net4, net6 = f"{lab.victim4.rsplit('.', 1)[0]}.48/29", f"{lab.net6.split('/')[0]}40/124"
    assert reaches(lab, v4) and reaches(lab, v6)
    fleet.lapi.cscli("decisions", "add", "--range", net4, "--duration", "1h")
    fleet.lapi.cscli("decisions", "add", "--range", net6, "--duration", "30m")
    eventually(lambda: in_set(lab, "victim", "ips_inline_net4", net4)
               and in_set(lab, "victim", "ips_inline_net6", net6))
    assert 3500 <= set_timeout(lab, "victim", "ips_inline_net4", net4) <= 3600
    assert not reaches(lab, v4) and not reaches(lab, v6)
    assert fleet.one.metric("ips_inline_crowdsec_decisions", origin="cscli", scope="Range") == 2


def test_deleted_decisions_are_lifted(fleet: Fleet) -> None:
    lab, ip = fleet.lab, source(fleet.lab, 33)
    net4 = f"{lab.victim4.rsplit('.', 1)[0]}.48/29"
    fleet.lapi.cscli("decisions", "delete", "--ip", ip)
    fleet.lapi.cscli("decisions", "delete", "--range", net4)
    took = eventually(lambda: not in_set(lab, "victim", "ips_inline_ban4", ip)
                      and not in_set(lab, "victim2", "ips_inline_ban4", ip)
                      and not in_set(lab, "victim", "ips_inline_net4", net4))
    assert took < WITHIN
    # The engine drops what it knows banned too, and follows the state file within 1 s.
    eventually(lambda: reaches(lab, ip) and reaches(lab, ip, "victim2")
               and reaches(lab, source(lab, 50)), timeout=5)


def test_an_sqli_ban_is_pushed_and_enforced_on_the_other_host(fleet: Fleet,
                                                              tmp_path: Path) -> None:
    lab, ip = fleet.lab, source(fleet.lab, 37)
    lab.exec("attacker", ["ip", "addr", "add", f"{ip}/32", "dev", lab.iface], check=False)
    assert reaches(lab, ip, "victim2")  # victim2 answers the attacker before
    out = attack(lab, "sqli", tmp_path)  # against the victim only
    assert "STOPPED" in out
    took = eventually(lambda: fleet.lapi_decisions(ip))
    assert took < WITHIN
    (decision,) = fleet.lapi_decisions(ip)
    assert decision["origin"] == "ips-inline" and decision["scenario"] == "ips-inline/sqli"
    alert = next(a for a in fleet.lapi.alerts() if a["source"]["value"] == ip)
    meta = {m["key"]: m["value"] for m in alert.get("meta") or []}
    assert meta["detector"] == "sqli" and meta["signature"] == "SQL injection in HTTP request"
    assert "SQL injection" in alert["message"] and alert["machine_id"] == "ips-inline-victim"
    # The other host cuts the attacker off without being attacked ...
    eventually(lambda: in_set(lab, "victim2", "ips_inline_ban4", ip))
    assert not reaches(lab, ip, "victim2")
    bans = {b["ip"]: b for b in json.loads(fleet.two.ips("bans", "--json").stdout)}
    assert bans[ip]["origin"] == "crowdsec:ips-inline"
    # ... and does not push it back: one decision, no push from victim2.
    time.sleep(2 * POLL)
    assert len(fleet.lapi_decisions(ip)) == 1
    assert fleet.two.metric("ips_inline_crowdsec_pushes_total", result="ok") == 0
    # The victim's own ban is local, not taken over by its echo from LAPI.
    bans = {b["ip"]: b for b in json.loads(fleet.one.ips("bans", "--json").stdout)}
    assert bans[ip]["origin"] == "local" and bans[ip]["detector"] == "sqli"


def test_manual_ban_is_pushed_and_unban_deletes_it(fleet: Fleet) -> None:
    lab, ip = fleet.lab, source(fleet.lab, 36)
    res = fleet.one.ips("ban", ip, "--duration", "900")
    assert "queued for CrowdSec" in res.stdout
    eventually(lambda: fleet.lapi_decisions(ip))
    (decision,) = fleet.lapi_decisions(ip)
    assert decision["origin"] == "ips-inline" and decision["scenario"] == "ips-inline/manual"
    eventually(lambda: in_set(lab, "victim2", "ips_inline_ban4", ip))
    fleet.one.ips("unban", ip)
    eventually(lambda: not fleet.lapi_decisions(ip))
    eventually(lambda: not in_set(lab, "victim2", "ips_inline_ban4", ip))
    eventually(lambda: reaches(lab, ip) and reaches(lab, ip, "victim2"), timeout=5)


def test_whitelisted_addresses_are_never_banned_by_decisions(fleet: Fleet) -> None:
    lab, ip = fleet.lab, source(fleet.lab, WHITELISTED)
    before = fleet.one.metric("ips_inline_crowdsec_decisions_rejected_total",
                              reason="whitelisted")
    fleet.lapi.cscli("decisions", "add", "--ip", ip, "--duration", "1h")
    fleet.lapi.cscli("decisions", "add", "--range", f"{ip.rsplit('.', 1)[0]}.32/29",
                     "--duration", "1h")
    # The LAPI host is whitelisted on victim2: a ban on it must not cut victim2 off.
    fleet.lapi.cscli("decisions", "add", "--ip", lab.victim4, "--duration", "1h")
    eventually(lambda: fleet.one.metric("ips_inline_crowdsec_decisions_rejected_total",
                                        reason="whitelisted") >= before + 3)
    eventually(lambda: in_set(lab, "victim2", "ips_inline_ban4", ip))  # not whitelisted there
    assert not in_set(lab, "victim", "ips_inline_ban4", ip)
    assert not in_set(lab, "victim", "ips_inline_net4", f"{ip.rsplit('.', 1)[0]}.32/29")
    assert not in_set(lab, "victim2", "ips_inline_ban4", lab.victim4)
    assert reaches(lab, ip)
    assert fleet.one.run_log().count(f"Ip {ip} from cscli) not applied") == 1  # logged once
    pulls = fleet.two.metric("ips_inline_crowdsec_pulls_total", result="ok")
    eventually(lambda: fleet.two.metric("ips_inline_crowdsec_pulls_total", result="ok") > pulls)
    assert fleet.two.metric("ips_inline_crowdsec_lapi_up") == 1
    for value in (ip, lab.victim4):
        fleet.lapi.cscli("decisions", "delete", "--ip", value)
    fleet.lapi.cscli("decisions", "delete", "--range", f"{ip.rsplit('.', 1)[0]}.32/29")


def test_lapi_down_local_bans_go_on_and_pushes_arrive_later(fleet: Fleet,
                                                            tmp_path: Path) -> None:
    lab, ip = fleet.lab, source(fleet.lab, 31)
    fleet.lapi.stop("KILL")
    try:
        eventually(lambda: fleet.one.metric("ips_inline_crowdsec_lapi_up") == 0)
        out = attack(lab, "icmp_flood", tmp_path)
        assert "STOPPED" in out  # detection and the local ban go on
        assert fleet.one.bans()[ip] == "icmp_flood"
        eventually(lambda: fleet.one.metric("ips_inline_crowdsec_push_queue") >= 1)
        time.sleep(3)  # a few retries against a dead LAPI
        assert fleet.one.proc is not None and fleet.one.proc.poll() is None
    finally:
        fleet.lapi.start()
    took = eventually(lambda: fleet.lapi_decisions(ip), timeout=WITHIN + 5)
    assert fleet.lapi_decisions(ip)[0]["scenario"] == "ips-inline/icmp_flood"
    eventually(lambda: in_set(lab, "victim2", "ips_inline_ban4", ip))
    assert fleet.one.metric("ips_inline_crowdsec_push_queue") == 0
    assert fleet.one.metric("ips_inline_crowdsec_lapi_up") == 1
    assert took < WITHIN + 5
    log = fleet.one.run_log()
    assert "answers again" in log and "Traceback" not in log


def test_with_workers_the_supervisor_pulls_and_pushes_once(fleet: Fleet, tmp_path: Path) -> None:
    lab, pulled, flooder = fleet.lab, source(fleet.lab, 34), source(fleet.lab, 32)
    fleet.one.stop()
    fleet.one.config.write_text(fleet.one.config.read_text().replace("[live]\n",
                                                                    "[live]\nworkers = 2\n"))
    fleet.one.start()
    fleet.one.wait_log("crowdsec: LAPI", 10)
    fleet.lapi.cscli("decisions", "add", "--ip", pulled, "--duration", "1h")
    eventually(lambda: in_set(lab, "victim", "ips_inline_ban4", pulled))
    assert "STOPPED" in attack(lab, "syn_flood", tmp_path)  # banned by one of the workers
    eventually(lambda: fleet.lapi_decisions(flooder))
    time.sleep(2 * POLL)
    (decision,) = fleet.lapi_decisions(flooder)  # pushed once, by the supervisor
    assert decision["scenario"] == "ips-inline/syn_flood"
    assert fleet.one.metric("ips_inline_crowdsec_pushes_total", result="ok") == 1
    assert fleet.one.run_log().count("pulling decisions every") == 1  # one agent, not one a worker


def test_secrets_never_reach_the_logs(fleet: Fleet) -> None:
    for daemon in (fleet.one, fleet.two):
        text = daemon.config.read_text()
        key = text.split('api_key = "')[1].split('"')[0]
        password = Path(text.split('password_file = "')[1].split('"')[0]).read_text()
        log = daemon.log.read_text()
        assert key not in log and password not in log
        assert key not in daemon.metrics()


def test_daemons_stop_cleanly(fleet: Fleet) -> None:
    for daemon in (fleet.one, fleet.two):
        start = time.monotonic()
        daemon.stop()
        assert time.monotonic() - start < 10
        assert "Traceback" not in daemon.run_log()


def test_victim2_has_no_route_out_and_plain_down_removes_it(fleet: Fleet) -> None:
    lab = fleet.lab
    assert lab.exec("victim2", ["ip", "route", "show", "default"]).stdout == ""
    assert lab.exec("victim2", ["ip", "route", "get", "1.1.1.1"], check=False).returncode != 0
    Lab(lab.prefix).down()  # without LAB_VICTIM2, as the next test module does
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{lab.prefix}-victim2" not in names and f"{lab.prefix}-victim " not in names
