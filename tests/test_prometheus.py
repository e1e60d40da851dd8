"""The exporter against a real Prometheus server (loopback only), and the lab's
Prometheus config and Grafana dashboard checked against what we export."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Harness
from packets import CLIENT, Conn, http_get, ping, udp
from prometheus_client import CollectorRegistry

from ips_inline.config import MetricsConfig
from ips_inline.latency import LatencyHistogram
from ips_inline.metrics import DaemonMetrics, IpsCollector, serve

DOCKER = Path(__file__).resolve().parent.parent / "docker"
PROMETHEUS = "/usr/bin/prometheus"
JOB = "ips_inline_test"
WAIT = 30.0  # seconds; scrapes run every second, so this is generous


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], log: Path | None = None) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    pytest.fail(f"gave up after {WAIT:.0f}s waiting for {what}\n{tail}")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return json.load(resp)
    except OSError:
        return None


# -- fixtures: a live engine behind the exporter, and a Prometheus scraping it ----------


def _feed_forever(h: Harness, latency: LatencyHistogram, stop: threading.Event) -> None:
    """Clean traffic at ~200 pps, timed like the live receive loop times it."""
    pkt = udp(src=CLIENT)
    while not stop.wait(0.005):
        start = time.perf_counter()
        h.engine.process(pkt, time.time())
        latency.observe(time.perf_counter() - start)


@pytest.fixture
def exporter(harness: Harness) -> Iterator[int]:
    conn = Conn()
    harness.feed(*conn.handshake(), conn.send(http_get("/item?id=1' OR '1'='1")))
    harness.feed(*(ping(seq=i) for i in range(100)))
    latency = LatencyHistogram()
    registry = CollectorRegistry()
    registry.register(IpsCollector(lambda: [harness.engine], DaemonMetrics(latency=latency)))
    server = serve(MetricsConfig(listen="127.0.0.1", port=0), registry)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed_forever, args=(harness, latency, stop), daemon=True)
    feeder.start()
    try:
        yield server.server_port
    finally:
        stop.set()
        feeder.join(5)
        server.shutdown()
        server.server_close()


@pytest.fixture
def prometheus(exporter: int, tmp_path: Path) -> Iterator[str]:
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"{PROMETHEUS} not installed (Debian package prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter}']\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus to be ready", lambda: proc.poll() is None and _ready(base), log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def query(base: str, promql: str) -> list[dict[str, Any]]:
    body = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    if not body or body.get("status") != "success":
        return []
    return body["data"]["result"]


def scalar(base: str, promql: str) -> float | None:
    result = query(base, promql)
    return float(result[0]["value"][1]) if result else None


# -- a real Prometheus server ---------------------------------------------------------


def test_prometheus_scrapes_the_live_exporter(prometheus: str) -> None:
    wait_for("up == 1", lambda: scalar(prometheus, f'up{{job="{JOB}"}}') == 1)
    wait_for("one sqli alert",
             lambda: scalar(prometheus, 'ips_inline_alerts_total{detector="sqli"}') == 1)
    assert scalar(prometheus, 'ips_inline_alerts_total{detector="xss"}') == 0
    assert scalar(prometheus, 'ips_inline_bans_total{detector="icmp_flood"}') == 1
    p99 = "histogram_quantile(0.99, rate(ips_inline_verdict_seconds_bucket[1m]))"
    seconds = wait_for("a finite p99 verdict latency", lambda: _finite(scalar(prometheus, p99)))
    assert 0 < seconds <= 0.01, seconds


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- the lab's Prometheus config and Grafana dashboard --------------------------------


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return promtool


def test_lab_prometheus_config_is_valid() -> None:
    result = subprocess.run([_promtool(), "check", "config", str(DOCKER / "prometheus.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "victim:9100" in (DOCKER / "prometheus.yml").read_text()


def _exported_names(tmp_path: Path) -> set[str]:
    """Every sample name the exporter produces with all optional parts present."""
    h = Harness()
    h.feed(ping(), b"\x60")
    proc = tmp_path / "nfnetlink_queue"
    proc.write_text("    0  1     0 2 65531     0     0        5  1\n")
    latency = LatencyHistogram()
    latency.observe(1e-4)
    daemon = DaemonMetrics(latency=latency, bans_active=lambda: 0, queues=(0,), proc_path=proc)
    collector = IpsCollector(lambda: [h.engine], daemon)
    names = {s.name for family in collector.collect() for s in family.samples}
    return names | _crowdsec_names()


def _crowdsec_names() -> set[str]:
    """The CrowdSec agent's samples, from an agent that pulled and pushed once."""
    from types import SimpleNamespace

    from ips_inline.crowdsec.metrics import families
    from ips_inline.crowdsec.watcher import PUSH_RESULTS

    bouncer = SimpleNamespace(gauge=lambda: {("crowdsec", "Ip"): 1}, rejected={})
    watcher = SimpleNamespace(dropped=0, results=dict.fromkeys(PUSH_RESULTS, 1), queued=0)
    agent = SimpleNamespace(up=1, bouncer=bouncer, pulls={"ok": 1}, watcher=watcher)
    return {s.name for family in families(agent) for s in family.samples}


def _panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _variable_queries(dashboard: dict[str, Any]) -> list[str]:  # Grafana label_values(...)
    return [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def test_grafana_dashboard_uses_only_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads((DOCKER / "grafana-dashboard.json").read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("packets/s", "alerts/s", "active bans", "p50", "p99", "queue drops",
                   "failed closed", "crowdsec"):
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
    exported = _exported_names(tmp_path)
    exprs = _panel_exprs(dashboard)
    for expr in exprs + _variable_queries(dashboard):
        used = set(re.findall(r"\bips_inline_\w+", expr))
        assert used, expr
        assert used <= exported, f"{expr}: not exported: {used - exported}"
    _check_promql(exprs, tmp_path)


def _check_promql(exprs: list[str], tmp_path: Path) -> None:
    """Each panel query must parse: wrap them as recording rules for promtool."""
    rules = tmp_path / "rules.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, expr in enumerate(exprs):
        grafana_free = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        lines += [f"      - record: dashboard:query{n}",
                  f"        expr: {json.dumps(grafana_free)}"]  # a JSON string is YAML
    rules.write_text("\n".join(lines) + "\n")
    result = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
