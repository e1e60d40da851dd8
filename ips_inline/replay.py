"""`ips-inline replay`: the production engine driven by capture files, with
each packet's capture timestamp as the clock."""

from __future__ import annotations

import sys
from typing import IO, Any

from . import heap
from .bans import BanManager, RecordingEnforcer, Whitelist
from .config import Config
from .engine import Engine, Stats
from .eve import EventSink, JsonLines, timestamp
from .metrics import replay_figures
from .sources.pcap import Capture, file_size

_PROGRESS_EVERY = 50_000  # packets between progress lines on a terminal
_LARGE = 8 << 20  # files above this size show progress


def build_engine(cfg: Config, sink: EventSink) -> tuple[Engine, RecordingEnforcer]:
    enforcer = RecordingEnforcer()
    bans = BanManager(cfg.bans, Whitelist(cfg.engine.whitelist), enforcer)
    return Engine(cfg, bans, sink), enforcer


def replay(paths: list[str], cfg: Config, out: IO[str], progress: IO[str] | None,
           warn: IO[str] | None = None) -> dict:
    """Run every file through one engine, in order; return the stats record. A file
    cut short inside its last record is replayed up to it, with a line on `warn`."""
    sink = JsonLines(out)
    engine, enforcer = build_engine(cfg, sink)
    heap.settle()
    non_ip = 0
    last = 0.0  # the last packet's time: the stats record's timestamp
    cut = {"files": 0, "bytes": 0}
    for path in paths:
        show = progress if progress is not None and file_size(path) > _LARGE else None
        with Capture(path) as cap:
            skipped, last = feed(engine, cap, show, last)
            non_ip += skipped
        if cap.cut is not None:
            cut["files"] += 1
            cut["bytes"] += cap.cut
            if warn is not None:
                warn.write(f"ips-inline: warning: {cut_message(cap)}\n")
    record = stats_record(engine.stats, [ip for ip, _d, _det in enforcer.bans], non_ip,
                          engine.defrag.counts, cut, last)
    record["stats"]["metrics"] = replay_figures(engine)  # the same names /metrics exports
    sink.emit(record)
    return record


def feed(engine: Engine, cap: Capture, show: IO[str] | None = None,
         last: float = 0.0) -> tuple[int, float]:
    """Every packet of one capture through the engine; returns the non-IP
    frames and the time of the last packet (`last` if there was none)."""
    non_ip = 0
    for n, (ts, l3) in enumerate(cap, 1):
        if l3 is None:
            non_ip += 1  # ARP and friends never reach the IP hooks
            continue
        engine.process(l3, ts)
        last = ts
        if show is not None and n % _PROGRESS_EVERY == 0:
            show.write(f"\r{cap.path}: {n} packets")
            show.flush()
    if show is not None:
        show.write("\n")
    return non_ip, last


def cut_message(cap: Capture) -> str:
    where = (f"inside a record ({cap.cut} bytes of it left out)" if cap.cut
             else "early (its compressed stream stops between records)")
    return f"{cap.path}: the capture ends {where}; replayed every record before it"


def stats_record(stats: Stats, bans: list[str], non_ip: int,
                 defrag: dict[str, int] | None = None,
                 cut: dict[str, int] | None = None, now: float = 0.0) -> dict[str, Any]:
    """Every IP record is one packet with one verdict. IP fragments: those held
    until their datagram completes count as accepted (metrics reason
    fragment_held); the one completing it counts under the datagram's verdict;
    pieces of a datagram dropped (overlap conflict, bad or evicted) count as
    dropped (reason fragment). `defrag` counts reassembly events. `capture_cut`:
    files that ended inside a record, and the bytes of those records left out;
    `now` is the time of the last packet."""
    return {
        "timestamp": timestamp(now),
        "event_type": "stats",
        "stats": {
            "packets": stats.packets,
            "accepted": stats.count("accept"),
            "dropped": stats.count("drop"),
            "malformed": sum(stats.malformed.values()),
            "non_ip": non_ip,
            "exceptions": stats.exceptions,
            "truncated": stats.truncated,
            "defrag": dict(defrag or {}),
            "capture_cut": dict(cut or {"files": 0, "bytes": 0}),
            "alerts": {k: v for k, v in stats.alerts.items() if v},
            "bans": bans,
        },
    }


def progress_stream() -> IO[str] | None:
    return sys.stderr if sys.stderr.isatty() else None
