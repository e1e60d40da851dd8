"""The network-namespace lab itself: topology, isolation, idempotent up/down."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_lab import lab_fixture  # noqa: F401  (provides the "lab" fixture)
from lab import LAB_SH, Lab

pytestmark = pytest.mark.netns


@pytest.fixture
def victim_http(lab: Lab) -> Iterator[subprocess.Popen[Any]]:
    proc = lab.start_victim_http()
    yield proc
    lab.kill(proc)


def curl(lab: Lab, host: str, url: str) -> tuple[int, str]:
    cp = lab.exec(host, ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url])
    body, _, code = cp.stdout.rpartition("\n")
    return int(code), body


def lab_sh(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_PREFIX": lab.prefix}
    return subprocess.run([str(LAB_SH), *args], env=env, capture_output=True, text=True, timeout=60)


def existing_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_addresses_from_env(lab: Lab) -> None:
    assert lab.net4 == f"10.77.{lab.octet}.0/24"
    assert lab.net6 == f"fd77:{lab.octet}::/64"
    assert (lab.victim4, lab.client4, lab.attacker4) == tuple(
        f"10.77.{lab.octet}.{i}" for i in (10, 20, 30)
    )
    assert lab.victim6 == f"fd77:{lab.octet}::10"
    assert lab.namespaces() == [f"{lab.prefix}-{n}" for n in ("victim", "client", "attacker", "sw")]
    assert Lab("ipsl").octet != lab.octet, "demo and test labs must not share a subnet"


@pytest.mark.parametrize("src", ["client", "attacker"])
@pytest.mark.parametrize("family", [4, 6])
def test_ping_victim(lab: Lab, src: str, family: int) -> None:
    cp = lab.exec(
        src, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", lab.addr("victim", family)]
    )
    assert " 0% packet loss" in cp.stdout


def test_client_and_attacker_see_each_other(lab: Lab) -> None:
    lab.exec("client", ["ping", "-n", "-c", "1", "-W", "2", lab.attacker6])
    lab.exec("attacker", ["ping", "-n", "-c", "1", "-W", "2", lab.client4])


@pytest.mark.usefixtures("victim_http")
@pytest.mark.parametrize("family", [4, 6])
def test_http_from_client(lab: Lab, family: int) -> None:
    code, body = curl(lab, "client", lab.url("victim", "/", family=family))
    assert code == 200 and "victim shop" in body
    code, body = curl(lab, "client", lab.url("victim", "/item?id=1", family=family))
    assert code == 200 and "widget" in body


@pytest.mark.usefixtures("victim_http")
def test_http_endpoints_from_attacker(lab: Lab) -> None:
    code, body = curl(lab, "attacker", lab.url("victim", "/"))
    assert code == 200 and "victim shop" in body
    code, body = curl(lab, "attacker", lab.url("victim", "/search?q=%3Cscript%3E"))
    assert code == 200 and "&lt;script&gt;" in body and "<script>" not in body
    # The deliberately injectable endpoint really is injectable (sqlmap needs this).
    code, body = curl(lab, "attacker", lab.url("victim", "/item?id=0%20OR%201=1"))
    assert code == 200 and all(n in body for n in ("widget", "gadget", "gizmo"))
    code, body = curl(lab, "attacker", lab.url("victim", "/item?id=1'"))
    assert code == 500 and "sqlite3.OperationalError" in body
    union = "/item?id=0%20UNION%20SELECT%20id,name,password,0%20FROM%20users"
    code, body = curl(lab, "attacker", lab.url("victim", union))
    assert code == 200 and "s3cr3t-admin" in body
    url = lab.url("victim", "/download?size=3000000", family=6)
    cp = lab.exec("attacker", ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", url])
    assert cp.stdout == "3000000"


def test_no_route_out(lab: Lab) -> None:
    for host in ("victim", "client", "attacker", "sw"):
        assert lab.exec(host, ["ip", "route", "show", "default"]).stdout == ""
        assert lab.exec(host, ["ip", "-6", "route", "show", "default"]).stdout == ""
        assert lab.exec(host, ["ip", "route", "get", "1.1.1.1"], check=False).returncode != 0
        cp = lab.exec(host, ["ip", "-6", "route", "get", "2001:4860:4860::8888"], check=False)
        assert cp.returncode != 0
    routes = lab.exec("victim", ["ip", "-4", "route", "show"]).stdout.strip().splitlines()
    assert [r.split()[0] for r in routes] == [lab.net4]
    # Nothing of the lab in the host's namespace: no interface whose peer is in the lab.
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"link-netns {lab.prefix}-" not in root_links


def test_up_twice_is_safe(lab: Lab, victim_http: subprocess.Popen[Any]) -> None:
    cp = lab_sh(lab, "up")
    assert cp.returncode == 0, cp.stderr
    assert "already up" in cp.stderr
    assert lab.is_up()
    assert victim_http.poll() is None, "second up must leave running processes alone"
    code, _ = curl(lab, "client", lab.url("victim", "/", family=6))
    assert code == 200


def test_down_kills_everything_and_is_idempotent(lab: Lab) -> None:
    tracked = lab.popen("client", ["sleep", "300"])
    # Not tracked by Lab, ignores SIGTERM: only lab.sh down's SIGKILL can end it.
    untracked = subprocess.Popen(
        [str(LAB_SH), "exec", "victim", "sh", "-c", "trap '' TERM; sleep 300 & wait"],
        env={**os.environ, "LAB_PREFIX": lab.prefix},
    )
    try:
        cp = lab_sh(lab, "down")  # the script itself, bypassing Lab's own process tracking
        assert cp.returncode == 0, cp.stderr
        assert untracked.wait(timeout=10) != 0
        assert tracked.wait(timeout=10) != 0
        assert not existing_namespaces() & set(lab.namespaces())
        assert lab.status() == 2
        assert lab_sh(lab, "down").returncode == 0  # down twice is fine
        lab.down()
    finally:
        for proc in (untracked, tracked):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Leave the module's lab as we found it, whatever the test order.
    lab.up()
    lab.exec("client", ["ping", "-n", "-c", "1", "-W", "2", lab.victim4])
