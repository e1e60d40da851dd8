"""The compose lab cannot run here (no Docker engine); what can be checked is
that it is valid and plays the same story as the namespace lab."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from lab import REPO

DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian package) not installed")
    res = subprocess.run(["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_three_hosts_and_the_metrics_port(compose: dict) -> None:
    services = compose["services"]
    assert {"victim", "client", "attacker"} <= set(services)
    assert "NET_ADMIN" in services["victim"]["cap_add"]
    assert any("9100" in str(p) for p in services["victim"]["ports"])
    nets = {name: s["networks"] for name, s in services.items()}
    assert nets["victim"].keys() == nets["client"].keys() == nets["attacker"].keys()


def test_both_labs_play_the_same_scripts(compose: dict) -> None:
    services = compose["services"]
    assert services["victim"]["command"][0] == "scripts/victim.sh"
    assert services["client"]["command"] == ["scripts/scenario.sh", "client"]
    assert services["attacker"]["command"] == ["scripts/scenario.sh", "attacker"]
    demo = (REPO / "scripts" / "demo.sh").read_text()
    assert '"$HERE/scenario.sh" client' in demo and '"$HERE/scenario.sh" attacker' in demo
    assert '"$HERE/victim.sh" ips' in demo
    assert services["client"]["environment"]["ATTACK_NET"] + ".10" == \
        services["client"]["environment"]["VICTIM"]


def test_image_has_every_tool_the_story_runs() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    scenario = (REPO / "scripts" / "scenario.sh").read_text()
    for tool in ("hping3", "nmap", "curl", "sqlmap", "iptables", "ipset", "iproute2"):
        assert tool in dockerfile, tool
    for tool in ("hping3", "nmap", "curl", "sqlmap", "ping"):
        assert tool in scenario, tool
