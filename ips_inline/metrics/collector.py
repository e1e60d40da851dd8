"""The scrape-time collector: engine snapshots and daemon counters rendered as
Prometheus metric families. Nothing here runs per packet."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .. import __version__, compiled
from ..config import DETECTOR_NAMES
from ..engine import REASONS
from ..latency import LatencyHistogram
from .kernel import NFQUEUE_PROC, read_nfqueue
from .snapshot import EngineLike, Snapshot, merge, snapshot

BAN_FAILURE_REASONS = ("set_full", "rate_cap", "netlink")
BODY_KINDS = ("form", "multipart", "json", "xml", "text", "binary")
RELOAD_RESULTS = ("success", "failure")


class BanFailureCounts(Protocol):
    """enforce.live.BanFailures: bans the live enforcer could not apply. (rate_cap
    is counted by BanManager and arrives in the engine snapshot.)"""

    set_full: int  # ipset maxelem reached: "Hash is full"
    netlink: int  # any other ipset/netlink error, or the ban queue was full


@dataclass
class DaemonMetrics:
    """What the daemon owns outside the engine(s); all optional. An absent
    counter exports 0 (the event cannot happen in this mode); an unknown level
    (bans_active returning None, queue not bound) omits its sample."""

    latency: LatencyHistogram | None = None
    ban_failures: BanFailureCounts | None = None
    reloads: Mapping[str, int] | None = None  # {"success": n, "failure": n}, bumped on SIGHUP
    bans_active: Callable[[], int | None] | None = None  # e.g. lambda: enforcer.active_count
    queues: tuple[int, ...] = ()  # NFQUEUE numbers this daemon binds (LiveConfig.queue_num)
    proc_path: str | Path = NFQUEUE_PROC
    extra: Callable[[], Iterable[Metric]] | None = None  # more families, e.g. crowdsec's


class IpsCollector:
    """registry.register(IpsCollector(lambda: [engine], DaemonMetrics(...)))."""

    def __init__(self, engines: Callable[[], Iterable[EngineLike]],
                 daemon: DaemonMetrics | None = None) -> None:
        self._gather: Callable[[], Iterable[Snapshot]] = lambda: map(snapshot, engines())
        self.daemon = daemon or DaemonMetrics()

    @classmethod
    def from_snapshots(cls, snapshots: Callable[[], Iterable[Snapshot]],
                       daemon: DaemonMetrics | None = None) -> IpsCollector:
        """For snapshots made elsewhere, e.g. sent by worker processes over a pipe."""
        collector = cls(lambda: (), daemon)
        collector._gather = snapshots
        return collector

    def collect(self) -> Iterator[Metric]:
        snaps = list(self._gather())
        if self.daemon.latency is not None:
            snaps.append({"verdict_seconds": self.daemon.latency.snapshot()})
        data = merge(snaps)
        yield from engine_families(data)
        yield from daemon_families(self.daemon, data)
        yield from queue_families(self.daemon)
        if self.daemon.extra is not None:
            yield from self.daemon.extra()
        labels = build_labels()
        info = GaugeMetricFamily("ips_inline_build_info", "ips-inline version and build "
                                 "(compiled or interpreted) in labels; always 1",
                                 labels=list(labels))
        info.add_metric(list(labels.values()), 1)
        yield info


def build_labels() -> dict[str, str]:
    """ips_inline_build_info's labels: the version, and which build of the
    packet path runs (ips_inline/compiled.py)."""
    return {"version": __version__, "build": compiled.state().build}


def engine_families(data: Mapping[str, Any]) -> Iterator[Metric]:
    yield from rules_families(data)
    packets = CounterMetricFamily("ips_inline_packets_total", "Packets by verdict and reason",
                                  labels=["verdict", "reason"])
    counts = data.get("packets", {})
    for verdict, reason in REASONS:  # every pair, zeros included: rate() needs the series
        packets.add_metric([verdict, reason], counts.get(verdict, {}).get(reason, 0))
    yield packets
    yield _counter("ips_inline_alerts_total", "Detector alerts (block and alert-only)",
                   "detector", data.get("alerts", {}), DETECTOR_NAMES)
    yield _counter("ips_inline_bans_total", "Bans issued", "detector", data.get("bans", {}),
                   DETECTOR_NAMES)
    yield _counter("ips_inline_malformed_total", "Undecodable packets by reason", "reason",
                   data.get("malformed", {}))
    yield _counter("ips_inline_stream_errors_total",
                   "Connections whose stream the engine could not follow, by reason "
                   "(failed closed unless engine.stream_error_policy = accept)", "reason",
                   data.get("stream_errors", {}))
    yield _counter("ips_inline_http_bodies_total",
                   "Request bodies read, by how (form, multipart, json, xml, text, binary)",
                   "kind", data.get("http_bodies", {}), BODY_KINDS)
    yield CounterMetricFamily("ips_inline_http_body_skipped_bytes_total",
                              "Request body bytes not fed to the payload detectors (binary "
                              "file contents)", value=data.get("http_body_skipped_bytes", 0))
    yield CounterMetricFamily("ips_inline_exceptions_total", "Engine errors on a packet",
                              value=data.get("exceptions", 0))
    yield _counter("ips_inline_defrag_total", "IP fragment reassembly events", "event",
                   data.get("defrag", {}))
    yield CounterMetricFamily("ips_inline_truncated_total",
                              "Packets shorter than their IP header says (queue copy limit)",
                              value=data.get("truncated", 0))
    yield _counter("ips_inline_state_evictions_total",
                   "Entries pushed out of a full state table", "table",
                   data.get("state_evictions", {}))
    yield GaugeMetricFamily("ips_inline_tracked_sources",
                            "Sources in the largest per-source state table, summed over workers",
                            value=data.get("tracked_sources", 0))
    if "verdict_seconds" in data:
        yield _histogram("ips_inline_verdict_seconds",
                         "Time from receiving a packet to its verdict", data["verdict_seconds"])


def daemon_families(daemon: DaemonMetrics, data: Mapping[str, Any]) -> Iterator[Metric]:
    failures = data.get("ban_failures", {})
    if daemon.ban_failures is not None:
        failures = {**failures, "set_full": daemon.ban_failures.set_full,
                    "netlink": daemon.ban_failures.netlink}
    yield _counter("ips_inline_ban_failures_total", "Bans not applied, by cause", "reason",
                   failures, BAN_FAILURE_REASONS)
    yield CounterMetricFamily("ips_inline_unbans_total", "Bans lifted (expired or manual)",
                              value=data.get("unbans", 0))
    active = daemon.bans_active() if daemon.bans_active is not None else None
    if active is not None:
        yield GaugeMetricFamily("ips_inline_bans_active", "Entries in the kernel ban sets",
                                value=active)
    yield _counter("ips_inline_config_reloads_total", "Config reloads by result", "result",
                   daemon.reloads or {}, RELOAD_RESULTS)


def queue_families(daemon: DaemonMetrics) -> Iterator[Metric]:
    queue = read_nfqueue(daemon.queues, daemon.proc_path) if daemon.queues else None
    if queue is None:  # file absent or queue not bound: unknown, not zero
        return
    yield GaugeMetricFamily("ips_inline_queue_length", "Packets waiting in the kernel queue",
                            value=queue.length)
    yield CounterMetricFamily("ips_inline_queue_dropped_total",
                              "Packets the kernel dropped because the queue was full",
                              value=queue.dropped)
    yield CounterMetricFamily("ips_inline_queue_user_dropped_total",
                              "Packets the kernel could not deliver to the daemon's socket",
                              value=queue.user_dropped)
    yield CounterMetricFamily("ips_inline_queue_packets_total",
                              "Packets queued to the daemon (kernel id sequence)",
                              value=queue.id_sequence)


def rules_families(data: Mapping[str, Any]) -> Iterator[Metric]:
    engines = data.get("engines", 0)
    loaded = data.get("rules_loaded", {})
    yield _gauge("ips_inline_rules_loaded", "Rules of the rules detector: loaded, and "
                 "skipped for a keyword or shape not supported", "result",
                 {k: loaded.get(k, 0) // max(engines, 1) for k in ("ok", "skipped")})
    yield CounterMetricFamily("ips_inline_rules_budget_exhausted_total",
                              "Rule evaluations cut short by their backtracking budget "
                              "(counted as no match)",
                              value=data.get("rules_budget_exhausted", 0))


def _counter(name: str, doc: str, label: str, values: Mapping[str, float],
             always: Iterable[str] = ()) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key in dict.fromkeys([*always, *sorted(values)]):  # `always` first, then the rest
        family.add_metric([key], values.get(key, 0))
    return family


def _gauge(name: str, doc: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _histogram(name: str, doc: str, hist: Mapping[str, Any]) -> HistogramMetricFamily:
    # Snapshot buckets are already cumulative and keyed by `le`; order by bound.
    buckets = sorted(hist["buckets"].items(), key=lambda item: float(item[0]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist["sum"])
