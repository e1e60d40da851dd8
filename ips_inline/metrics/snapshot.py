"""Engine figures as plain snapshots: JSON-able, summable across workers.

A snapshot is a dict of numbers and nested dicts of numbers, keyed by the
exported metric names without the `ips_inline_` prefix and `_total` suffix.
Merging is a key-by-key sum, so a parent process can aggregate the snapshots
its workers send over a pipe exactly as it aggregates its own engines.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..engine import REASONS

if TYPE_CHECKING:
    from ..latency import LatencyHistogram

Snapshot = dict[str, Any]

# Tables keyed by connection; every other engine table is keyed by source address.
FLOW_TABLES = frozenset({"flows", "half_open"})
# Levels, not counters: summed across live workers, never carried past a reload.
GAUGES = frozenset({"tracked_sources"})


class TableLike(Protocol):
    name: str
    evictions: int

    def __len__(self) -> int: ...


class StatsLike(Protocol):
    verdicts: list[int]
    alerts: Mapping[str, int]
    bans: Mapping[str, int]
    malformed: Mapping[str, int]
    exceptions: int


class BanCountsLike(Protocol):
    rate_capped: int


class EngineLike(Protocol):
    stats: StatsLike
    bans: BanCountsLike

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
        "malformed": dict(stats.malformed),
        "exceptions": stats.exceptions,
        "state_evictions": evictions,
        # The largest per-source table: a lower bound on distinct sources held
        # (a union of keys would be exact but costs O(entries) per scrape). It
        # nears engine.max_sources when a spoofed flood fills the tables.
        "tracked_sources": max((len(t) for t in tables if t.name not in FLOW_TABLES), default=0),
    }
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


def counters_only(snap: Mapping[str, Any]) -> Snapshot:
    return {k: v for k, v in snap.items() if k not in GAUGES}


def replay_figures(engine: EngineLike) -> Snapshot:
    """The exported figures for replay's stats record: same names, no latency
    (wall-clock, so not reproducible), zero entries in labelled maps left out
    so expected-count files stay short."""
    return {k: _sparse(v) if isinstance(v, dict) else v for k, v in snapshot(engine).items()}


def _sparse(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _sparse(v) if isinstance(v, dict) else v for k, v in values.items()
            if isinstance(v, dict) or v}


class EngineSet:
    """The live engine(s) for the collector, counters kept across reloads.

    A reload builds a new Engine with fresh Stats and tables; exporting only
    the new one would drop every counter to 0, which Prometheus reads as a
    restart. replace() folds the old engine's final counters into a carried
    total, under the same lock the scrape takes, so a scrape never sees the old
    engine twice or not at all. Usage: IpsCollector.from_snapshots(engines.snapshots).
    """

    def __init__(self, *engines: EngineLike) -> None:
        self._engines = list(engines)
        self._carried: Snapshot = {}
        self._lock = threading.Lock()

    def replace(self, old: EngineLike, new: EngineLike) -> None:
        with self._lock:
            index = self._engines.index(old)  # ValueError if old is not live
            self._carried = merge([self._carried, counters_only(snapshot(old))])
            self._engines[index] = new

    def snapshots(self) -> list[Snapshot]:
        with self._lock:
            return [self._carried, *(snapshot(e) for e in self._engines)]
