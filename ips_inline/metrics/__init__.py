"""Prometheus exporter. The engine only bumps plain ints; everything here is
computed at scrape time by `IpsCollector`, registered in a registry the
daemon creates and passes in (no module globals, no default REGISTRY).

Live daemon, one engine:

    registry = CollectorRegistry()
    daemon = DaemonMetrics(latency=LatencyHistogram(), queues=(cfg.live.queue_num,),
                           bans_active=ipset_bans_active(cfg.live.set_v4, cfg.live.set_v6))
    engines = EngineSet(engine)              # engines.replace(old, new) on reload
    registry.register(IpsCollector.from_snapshots(engines.snapshots, daemon))
    server = serve(cfg.metrics, registry)    # MetricsError if the port is taken

Exported (never an IP address as a label value):
    ips_inline_packets_total{verdict,reason}      ips_inline_alerts_total{detector}
    ips_inline_bans_total{detector}               ips_inline_unbans_total
    ips_inline_bans_active                        ips_inline_ban_failures_total{reason}
    ips_inline_verdict_seconds (histogram)        ips_inline_tracked_sources
    ips_inline_state_evictions_total{table}       ips_inline_queue_length
    ips_inline_queue_dropped_total                ips_inline_queue_user_dropped_total
    ips_inline_queue_packets_total                ips_inline_exceptions_total
    ips_inline_malformed_total{reason}            ips_inline_config_reloads_total{result}
    ips_inline_build_info{version}
"""

from .collector import BanFailures, ConfigReloads, DaemonMetrics, IpsCollector
from .kernel import NFQUEUE_PROC, QueueCounters, ipset_bans_active, parse_nfqueue, read_nfqueue
from .server import MetricsError, serve
from .snapshot import EngineSet, Snapshot, merge, replay_figures, snapshot

METRIC_NAMES = (
    "ips_inline_packets_total", "ips_inline_alerts_total", "ips_inline_bans_total",
    "ips_inline_unbans_total", "ips_inline_bans_active", "ips_inline_ban_failures_total",
    "ips_inline_verdict_seconds", "ips_inline_tracked_sources",
    "ips_inline_state_evictions_total", "ips_inline_queue_length",
    "ips_inline_queue_dropped_total", "ips_inline_queue_user_dropped_total",
    "ips_inline_queue_packets_total", "ips_inline_exceptions_total",
    "ips_inline_malformed_total", "ips_inline_config_reloads_total", "ips_inline_build_info",
)

__all__ = [
    "METRIC_NAMES", "NFQUEUE_PROC", "BanFailures", "ConfigReloads", "DaemonMetrics",
    "EngineSet", "IpsCollector", "MetricsError", "QueueCounters", "Snapshot",
    "ipset_bans_active", "merge", "parse_nfqueue", "read_nfqueue", "replay_figures", "serve",
    "snapshot",
]
