"""Prometheus exporter: the scrape-time collector over a real engine, snapshots
and their sum, the /proc queue parser, the latency histogram, promtool lint."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import Harness
from packets import Conn, http_get, ping
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from ips_inline import __version__, compiled
from ips_inline.config import DETECTOR_NAMES, MetricsConfig
from ips_inline.enforce.live import BanFailures
from ips_inline.engine import REASONS
from ips_inline.latency import VERDICT_BUCKETS, LatencyHistogram
from ips_inline.metrics import (
    DaemonMetrics,
    IpsCollector,
    MetricsError,
    QueueCounters,
    merge,
    parse_nfqueue,
    read_nfqueue,
    replay_figures,
    serve,
    snapshot,
)

SQLI = http_get("/item?id=1' OR '1'='1")
# Kernel format: "%5u %6u %5u %1u %5u %5u %5u %8u %2d\n"
PROC = (
    "    0  31337     3 2 65531     7     2   123456  1\n"
    "    1  31338     1 2 65531     1     0      100  1\n"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def attack(h: Harness) -> list[bool]:
    """One SQLi request on a real connection, then a ping flood."""
    conn = Conn()
    verdicts = h.feed(*conn.handshake(), conn.send(SQLI))
    return verdicts + h.feed(*(ping(seq=i) for i in range(200)))


@pytest.fixture
def proc_file(tmp_path: Path) -> Path:
    path = tmp_path / "nfnetlink_queue"
    path.write_text(PROC)
    return path


def full_registry(h: Harness, proc_file: Path, latency: LatencyHistogram | None = None,
                  **daemon: object) -> CollectorRegistry:
    registry = CollectorRegistry()
    dm = DaemonMetrics(latency=latency or LatencyHistogram(), queues=(0,), proc_path=proc_file,
                       **daemon)  # type: ignore[arg-type]
    registry.register(IpsCollector(lambda: [h.engine], dm))
    return registry


# -- exposition over a live engine ----------------------------------------------------


def test_every_detector_and_verdict_present_at_zero(harness: Harness, proc_file: Path) -> None:
    samples = scrape(full_registry(harness, proc_file))
    for det in DETECTOR_NAMES:
        assert value(samples, "ips_inline_alerts_total", detector=det) == 0
        assert value(samples, "ips_inline_bans_total", detector=det) == 0
    for verdict, reason in REASONS:
        assert value(samples, "ips_inline_packets_total", verdict=verdict, reason=reason) == 0
    for reason in ("set_full", "rate_cap", "netlink"):
        assert value(samples, "ips_inline_ban_failures_total", reason=reason) == 0
    assert value(samples, "ips_inline_build_info", version=__version__,
                 build=compiled.state().build) == 1


def test_attack_raises_alerts_drops_and_bans(harness: Harness, proc_file: Path) -> None:
    registry = full_registry(harness, proc_file)
    before = scrape(registry)
    verdicts = attack(harness)
    after = scrape(registry)

    def rise(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert rise("ips_inline_alerts_total", detector="sqli") >= 1
    assert rise("ips_inline_alerts_total", detector="icmp_flood") >= 1
    assert rise("ips_inline_bans_total", detector="icmp_flood") == 1
    assert rise("ips_inline_packets_total", verdict="drop", reason="detector") >= 2
    assert rise("ips_inline_packets_total", verdict="drop", reason="banned") > 0
    for verdict, expected in (("drop", verdicts.count(False)), ("accept", verdicts.count(True))):
        got = sum(rise("ips_inline_packets_total", verdict=verdict, reason=r)
                  for v, r in REASONS if v == verdict)
        assert got == expected
    assert value(after, "ips_inline_tracked_sources") == 1  # one attacker, in icmp_sources


def test_no_label_value_is_an_ip_address(harness: Harness, proc_file: Path) -> None:
    registry = full_registry(harness, proc_file, bans_active=lambda: 1)
    attack(harness)
    harness.feed(b"\x45" + b"\x00" * 10)  # a malformed packet too
    labels = [v for (_name, pairs) in scrape(registry) for _k, v in pairs]
    assert labels
    for label in labels:
        with pytest.raises(ValueError):
            ipaddress.ip_address(label)


def test_histogram_is_cumulative_and_inf_is_count(harness: Harness, proc_file: Path) -> None:
    latency = LatencyHistogram()
    for seconds in (1e-6, 5e-6, 7e-5, 1e-4, 0.003, 0.5):
        latency.observe(seconds)
    samples = scrape(full_registry(harness, proc_file, latency))
    buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                      if name == "ips_inline_verdict_seconds_bucket"))
    assert [le for le, _v in buckets] == [*VERDICT_BUCKETS, float("inf")]
    counts = [v for _le, v in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == value(samples, "ips_inline_verdict_seconds_count") == 6
    assert counts[:2] == [2, 2]  # 5e-6 sits in le="5e-06": buckets are "<="
    assert value(samples, "ips_inline_verdict_seconds_sum") == pytest.approx(0.503176)


def test_daemon_counters_and_unknown_levels(harness: Harness, proc_file: Path) -> None:
    failures, reloads = BanFailures(set_full=2, netlink=1), {"success": 3, "failure": 1}
    active: list[int | None] = [5]
    registry = full_registry(harness, proc_file, ban_failures=failures, reloads=reloads,
                             bans_active=lambda: active[0])
    samples = scrape(registry)
    assert value(samples, "ips_inline_ban_failures_total", reason="set_full") == 2
    assert value(samples, "ips_inline_ban_failures_total", reason="netlink") == 1
    assert value(samples, "ips_inline_config_reloads_total", result="success") == 3
    assert value(samples, "ips_inline_config_reloads_total", result="failure") == 1
    assert value(samples, "ips_inline_bans_active") == 5
    active[0] = None  # the set cannot be read: omit, do not claim 0
    assert not any(name == "ips_inline_bans_active" for name, _l in scrape(registry))


def test_unbans_come_from_the_ban_manager(harness: Harness, proc_file: Path) -> None:
    registry = full_registry(harness, proc_file)
    attack(harness)
    assert value(scrape(registry), "ips_inline_unbans_total") == 0
    harness.engine.sweep(harness.now + harness.cfg.bans.base_duration + 1)  # the ban expires
    assert value(scrape(registry), "ips_inline_unbans_total") == 1


def test_rate_capped_bans_are_exported(make_harness, proc_file: Path) -> None:
    h = make_harness()
    h.cfg.bans.max_per_minute = 1
    for n in range(3):  # three flooding sources; only the first may be banned
        h.feed(*(ping(src=f"10.77.1.{n}", seq=i) for i in range(60)))
    samples = scrape(full_registry(h, proc_file))
    # BanManager counts refused attempts (one per offending packet), not sources.
    capped = h.engine.bans.rate_capped
    assert capped >= 2
    assert value(samples, "ips_inline_ban_failures_total", reason="rate_cap") == capped
    assert value(samples, "ips_inline_bans_total", detector="icmp_flood") == 1


# -- kernel queue counters ------------------------------------------------------------


def test_parse_nfqueue_columns() -> None:
    table = parse_nfqueue(PROC + "garbage line\n\n  7 1 2\n")
    assert table == {0: QueueCounters(3, 7, 2, 123456), 1: QueueCounters(1, 1, 0, 100)}


def test_read_nfqueue_sums_bound_queues_and_omits_unknown(proc_file: Path, tmp_path: Path) -> None:
    assert read_nfqueue((0,), proc_file) == QueueCounters(3, 7, 2, 123456)
    assert read_nfqueue((0, 1, 9), proc_file) == QueueCounters(4, 8, 2, 123556)
    assert read_nfqueue((9,), proc_file) is None
    assert read_nfqueue((0,), tmp_path / "absent") is None


def test_queue_samples_exported_or_omitted(harness: Harness, proc_file: Path,
                                           tmp_path: Path) -> None:
    samples = scrape(full_registry(harness, proc_file))
    assert value(samples, "ips_inline_queue_length") == 3
    assert value(samples, "ips_inline_queue_dropped_total") == 7
    assert value(samples, "ips_inline_queue_user_dropped_total") == 2
    assert value(samples, "ips_inline_queue_packets_total") == 123456
    for path in (tmp_path / "absent", tmp_path / "empty"):
        if path.name == "empty":
            path.write_text("")
        names = {name for name, _l in scrape(full_registry(harness, path))}
        assert not any(n.startswith("ips_inline_queue_") for n in names)
        assert "ips_inline_packets_total" in names


# -- snapshots: several workers, reloads, replay --------------------------------------


def test_collector_sums_engines_and_json_snapshots(make_harness) -> None:
    a, b = make_harness(), make_harness()
    attack(a)
    b.feed(*Conn().handshake(), Conn().send(SQLI))
    la, lb = LatencyHistogram(), LatencyHistogram()
    la.observe(1e-5)
    lb.observe(2e-3)
    direct = CollectorRegistry()
    direct.register(IpsCollector(lambda: [a.engine, b.engine]))
    # What worker processes would send their parent over a pipe.
    wire = [json.loads(json.dumps(snapshot(h.engine, lat))) for h, lat in ((a, la), (b, lb))]
    piped = CollectorRegistry()
    piped.register(IpsCollector.from_snapshots(lambda: wire))
    summed, merged = scrape(direct), scrape(piped)
    for det in DETECTOR_NAMES:
        expected = a.engine.stats.alerts[det] + b.engine.stats.alerts[det]
        assert value(summed, "ips_inline_alerts_total", detector=det) == expected
    packets = a.engine.stats.packets + b.engine.stats.packets
    assert sum(v for (n, _l), v in summed.items() if n == "ips_inline_packets_total") == packets
    assert {k: v for k, v in merged.items() if "verdict_seconds" not in k[0]} == summed
    assert value(merged, "ips_inline_verdict_seconds_count") == 2
    assert value(merged, "ips_inline_verdict_seconds_bucket", le="0.001") == 1


def test_merge_is_a_keywise_sum() -> None:
    got = merge([{"alerts": {"sqli": 1}, "exceptions": 2},
                 {"alerts": {"sqli": 2, "xss": 1}, "exceptions": 1}, {}])
    assert got == {"alerts": {"sqli": 3, "xss": 1}, "exceptions": 3}
    with pytest.raises(ValueError, match="not a number"):
        merge([{"exceptions": "3"}])


def test_counters_survive_a_config_reload(harness: Harness, proc_file: Path) -> None:
    registry = full_registry(harness, proc_file)
    attack(harness)
    before = scrape(registry)
    harness.engine.reconfigure(harness.cfg)  # what the daemon does on SIGHUP
    after = scrape(registry)
    lost = [key for key, count in before.items()
            if key[0].endswith("_total") and after[key] < count]
    assert not lost


def test_replay_figures_match_the_exposition(harness: Harness) -> None:
    attack(harness)
    figures = replay_figures(harness.engine)
    json.dumps(figures)
    stats = harness.engine.stats
    assert figures["alerts"] == {k: v for k, v in stats.alerts.items() if v}
    assert figures["packets"]["drop"]["detector"] == stats.verdicts[REASONS.index(("drop",
                                                                                    "detector"))]
    assert "verdict_seconds" not in figures
    assert 0 not in figures["packets"]["accept"].values()


# -- latency histogram ----------------------------------------------------------------


def test_latency_histogram_buckets_and_sum() -> None:
    hist = LatencyHistogram((1.0, 2.0))
    for seconds in (0.5, 1.0, 1.5, 2.0, 9.0):
        hist.observe(seconds)
    assert hist.counts == [2, 2, 1]
    assert hist.snapshot() == {"buckets": {"1.0": 2, "2.0": 4, "+Inf": 5}, "sum": 14.0}
    with pytest.raises(ValueError):
        LatencyHistogram((2.0, 1.0))


# -- exposition format and the HTTP endpoint ------------------------------------------


def test_promtool_check_metrics_is_clean(harness: Harness, proc_file: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    latency = LatencyHistogram()
    latency.observe(4e-5)
    registry = full_registry(harness, proc_file, latency, bans_active=lambda: 1)
    attack(harness)
    harness.feed(b"\x60")  # malformed: the malformed family gets a sample
    text = generate_latest(registry)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=30)
    assert result.returncode == 0 and not result.stdout and not result.stderr, (
        result.stdout.decode() + result.stderr.decode())
    generate_openmetrics(registry)  # what a Prometheus server negotiates: must not raise


def test_serve_exposes_registry_on_loopback(harness: Harness, proc_file: Path) -> None:
    server = serve(MetricsConfig(listen="127.0.0.1", port=0), full_registry(harness, proc_file))
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
            body = resp.read().decode()
        assert 'ips_inline_alerts_total{detector="sqli"} 0.0' in body
    finally:
        server.shutdown()
        server.server_close()


def test_serve_reports_a_taken_port_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError) as info:
            serve(MetricsConfig(listen="127.0.0.1", port=port), CollectorRegistry())
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "already in use" in message
    assert "\n" not in message


def test_fragments_and_truncated_packets_are_exported(harness: Harness, proc_file: Path) -> None:
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.packet import Raw

    datagram = IP(src="10.77.0.30", dst="10.77.0.10") / UDP(dport=53) / Raw(b"x" * 64)
    pieces = [bytes(p) for p in fragment(datagram, fragsize=24)]
    harness.feed(*pieces, ping()[:-4])  # every fragment, then a ping cut short
    samples = scrape(full_registry(harness, proc_file))
    assert value(samples, "ips_inline_defrag_total", event="fragments") == len(pieces) > 1
    assert value(samples, "ips_inline_truncated_total") == 1


def test_rules_loaded_is_a_gauge_of_one_engines_rules() -> None:
    """Every worker loads the same rules: two engines still report one ruleset."""
    engines = [Harness().engine, Harness().engine]
    registry = CollectorRegistry()
    registry.register(IpsCollector(lambda: engines))
    samples = scrape(registry)
    loaded = engines[0].ruleset.loaded
    assert loaded > 0
    assert value(samples, "ips_inline_rules_loaded", result="ok") == loaded
    assert value(samples, "ips_inline_rules_loaded", result="skipped") == 0
