"""Prometheus exporter. The engine only bumps plain ints; everything here is
computed at scrape time by `IpsCollector`, registered in a registry the
daemon creates and passes in (no module globals, no default REGISTRY).

Wiring in the daemon (one engine; reconfigure() keeps it and its counters):

    registry = CollectorRegistry()
    registry.register(IpsCollector(lambda: [self.engine], DaemonMetrics(
        latency=self.latency, ban_failures=self.failures, reloads=self.reloads,
        bans_active=lambda: self.enforcer.active_count, queues=(cfg.live.queue_num,))))
    server = serve(cfg.metrics, registry)    # MetricsError if the port is taken

Several worker processes: each sends json(snapshot(engine, latency)) to the
parent, which registers IpsCollector.from_snapshots(lambda: latest_snapshots).

Exported (never an IP address as a label value):
    ips_inline_packets_total{verdict,reason}      ips_inline_alerts_total{detector}
    ips_inline_bans_total{detector}               ips_inline_unbans_total
    ips_inline_bans_active                        ips_inline_ban_failures_total{reason}
    ips_inline_verdict_seconds (histogram)        ips_inline_tracked_sources
    ips_inline_state_evictions_total{table}       ips_inline_queue_length
    ips_inline_queue_dropped_total                ips_inline_queue_user_dropped_total
    ips_inline_queue_packets_total                ips_inline_exceptions_total
    ips_inline_malformed_total{reason}            ips_inline_config_reloads_total{result}
    ips_inline_build_info{version,build}
"""

from .collector import BanFailureCounts, DaemonMetrics, IpsCollector
from .kernel import NFQUEUE_PROC, QueueCounters, parse_nfqueue, read_nfqueue
from .server import MetricsError, serve
from .snapshot import Snapshot, merge, replay_figures, snapshot

__all__ = [
    "NFQUEUE_PROC", "BanFailureCounts", "DaemonMetrics", "IpsCollector", "MetricsError",
    "QueueCounters", "Snapshot", "merge", "parse_nfqueue", "read_nfqueue", "replay_figures",
    "serve", "snapshot",
]
