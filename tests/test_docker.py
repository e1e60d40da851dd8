"""The compose lab cannot run here (no Docker engine); what can be checked is
that it is valid and plays the same story as the namespace lab."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from lab import REPO

from ips_inline.config import Config, LiveConfig
from ips_inline.replay import replay

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


# -- the log shipper example -----------------------------------------------------------------
# The timestamp layout of Filebeat's suricata module (x-pack/filebeat/module/
# suricata/eve/config/eve.yml: '2006-01-02T15:04:05.999999999Z0700', Go's
# notation), as a regular expression: fraction of up to 9 digits, Z or +hhmm.
FILEBEAT_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d{4})")


def test_filebeat_reads_the_eve_log_as_suricata_eve() -> None:
    config = yaml.safe_load((DOCKER / "filebeat.yml").read_text())
    modules = [m for m in config["filebeat.modules"] if m["module"] == "suricata"]
    assert len(modules) == 1 and modules[0]["eve"]["enabled"] is True
    paths = modules[0]["eve"]["var.paths"]
    lab = tomllib.loads((REPO / "scripts" / "lab.toml").read_text())["live"]["eve_path"]
    assert LiveConfig().eve_path in paths and lab in paths
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert "eve:/var/log/ips-inline" in compose["services"]["victim"]["volumes"]
    assert {Path(p).parent for p in paths} == {Path("/var/log/ips-inline")}
    assert config["output.elasticsearch"]["hosts"]


def test_every_record_has_a_timestamp_filebeat_parses() -> None:
    out = io.StringIO()
    replay([str(REPO / "pcaps" / "sqli_get.pcap")], Config(), out, None)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {r["event_type"] for r in records} >= {"alert", "ban", "stats"}
    for record in records:
        assert FILEBEAT_TIMESTAMP.fullmatch(record["timestamp"]), record["timestamp"]
        parsed = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert parsed.year == 2025


def test_the_grafana_dashboard_reads_metrics_only() -> None:
    """The dashboard plots Prometheus metrics (unchanged by the EVE shape):
    no query names an EVE field, and every metric it names is exported."""
    dashboard = json.loads((DOCKER / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    source = "".join((REPO / "ips_inline" / path).read_text() for path in (
        "metrics/collector.py", "metrics/kernel.py", "crowdsec/metrics.py"))
    for name in {m for e in exprs for m in re.findall(r"ips_inline_\w+", e)}:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f'"{base}' in source, f"{name} is not exported"
    eve_fields = ("event_type", "src_ip", "signature", "flow_id", "detector\"")
    assert not any(f in e for e in exprs for f in eve_fields)
