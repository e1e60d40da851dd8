"""Engine figures as plain snapshots: JSON-able, summable across workers.

A snapshot is a dict of numbers and nested dicts of numbers, keyed by the
exported metric names without the `ips_inline_` prefix and `_total` suffix.
Merging is a key-by-key sum, so a parent process can aggregate the snapshots
its workers send over a pipe exactly as it aggregates its own engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..engine import REASONS

if TYPE_CHECKING:
    from ..latency import LatencyHistogram

Snapshot = dict[str, Any]

# Tables keyed by connection; every other engine table is keyed by source address.
FLOW_TABLES = frozenset({"flows", "half_open", "picked_up"})


class TableLike(Protocol):
    name: str
    evictions: int

    def __len__(self) -> int: ...


class StatsLike(Protocol):
    verdicts: list[int]
    alerts: Mapping[str, int]
    bans: Mapping[str, int]
    malformed: Mapping[str, int]
    stream_errors: Mapping[str, int]
    bodies: Mapping[str, int]
    body_skipped: int
    exceptions: int
    truncated: int


class BanCountsLike(Protocol):
    rate_capped: int
    unbans: int


class DefragLike(Protocol):
    counts: Mapping[str, int]


class EngineLike(Protocol):
    stats: StatsLike
    bans: BanCountsLike
    defrag: DefragLike
    ruleset: Any  # rules.RuleSet | None

    def tables(self) -> list[Any]: ...


def snapshot(engine: EngineLike, latency: LatencyHistogram | None = None) -> Snapshot:
    """The engine's figures now. Safe from the scrape thread while the engine
    runs: dict() and list() of builtin containers copy under the GIL, so a
    packet adding a new key cannot break the iteration."""
    stats = engine.stats
    packets: dict[str, dict[str, int]] = {"accept": {}, "drop": {}}
    for (verdict, reason), n in zip(REASONS, list(stats.verdicts), strict=True):
        packets[verdict][reason] = n
    tables = engine.tables()
    evictions: dict[str, int] = {}
    for table in tables:
        evictions[table.name] = evictions.get(table.name, 0) + table.evictions
    snap: Snapshot = {
        "packets": packets,
        "alerts": dict(stats.alerts),
        "bans": dict(stats.bans),
        "ban_failures": {"rate_cap": engine.bans.rate_capped},
        "unbans": engine.bans.unbans,
        "malformed": dict(stats.malformed),
        "stream_errors": dict(stats.stream_errors),
        "http_bodies": dict(stats.bodies),
        "http_body_skipped_bytes": stats.body_skipped,
        "exceptions": stats.exceptions,
        "state_evictions": evictions,
        "defrag": dict(engine.defrag.counts),
        "truncated": stats.truncated,
        # The largest per-source table: a lower bound on distinct sources held
        # (a union of keys would be exact but costs O(entries) per scrape). It
        # nears engine.max_sources when a spoofed flood fills the tables.
        "tracked_sources": max((len(t) for t in tables if t.name not in FLOW_TABLES), default=0),
    }
    rules = getattr(engine, "ruleset", None)
    if rules is not None:
        # Gauges of the loaded rules, the same in every engine: merge sums them
        # over engines, and the collector divides by "engines".
        snap["engines"] = 1
        snap["rules_loaded"] = {"ok": rules.loaded, "skipped": len(rules.skipped)}
        snap["rules_budget_exhausted"] = rules.budget_exhausted
    if latency is not None:
        snap["verdict_seconds"] = latency.snapshot()
    return snap


def merge(snapshots: Iterable[Mapping[str, Any]]) -> Snapshot:
    """Key-by-key sum. tracked_sources sums too: with --queue-balance one source
    always lands on one worker, so workers hold disjoint sources."""
    out: Snapshot = {}
    for snap in snapshots:
        _add_into(out, snap)
    return out


def _add_into(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping):
            _add_into(dst.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            dst[key] = dst.get(key, 0) + value
        else:  # snapshots may come from another process: refuse, do not guess
            raise ValueError(f"snapshot value {key!r} is not a number: {value!r}")


def replay_figures(engine: EngineLike) -> Snapshot:
    """The exported figures for replay's stats record: same names, no latency
    (wall-clock, so not reproducible), zero entries in labelled maps left out
    so expected-count files stay short."""
    return {k: _sparse(v) if isinstance(v, dict) else v for k, v in snapshot(engine).items()}


def _sparse(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _sparse(v) if isinstance(v, dict) else v for k, v in values.items()
            if isinstance(v, dict) or v}

