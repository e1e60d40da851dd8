#!/usr/bin/env python3
"""make corpus: every capture under ../shared/corpus replayed through the engine and
compared with the reviewed expectations in tests/corpus_expected.toml.

In the manner of suricata-verify: a capture of an attack has an entry saying which
detectors must alert (and why it is an attack); every other capture must end with no
alert, no drop, no engine exception, within its time budget. A capture may be refused
only for a link type the expectations file lists as carrying no IP. Entries under
`pending` are known false positives waiting for an engine fix: they are allowed to
differ, and must: a pending entry that no longer differs fails until it is removed.

Each capture runs through a fresh engine built as `ips-inline replay` builds it, with
the default config, all in this one process. Exit 0 when nothing differs, 1 with the
list of differences, 2 when the expectations file is wrong. Usage:
    corpus.py [--corpus DIR] [--expected FILE] [--show]   (--show: each alert, for review)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ips_inline.config import Config  # noqa: E402
from ips_inline.eve import Collect, detector_of  # noqa: E402
from ips_inline.replay import build_engine, feed  # noqa: E402
from ips_inline.sources.pcap import (  # noqa: E402
    Capture,
    PcapError,
    UnsupportedLinkType,
    looks_like_capture,
)

CORPUS = REPO.parent / "shared" / "corpus"
EXPECTED = REPO / "tests" / "corpus_expected.toml"
_LOG = "ips_inline"


@dataclass
class Result:
    """What one capture did in the engine."""

    name: str  # path relative to the corpus root
    size: int
    packets: int = 0
    accepted: int = 0
    dropped: int = 0
    malformed: int = 0
    non_ip: int = 0
    exceptions: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    bans: dict[str, str] = field(default_factory=dict)  # source -> detector
    seconds: float = 0.0
    refused: str | None = None  # the one-line error, when the capture was not read
    linktype: int | None = None  # of a refusal for the link type
    cut: int | None = None
    crash: str | None = None  # an exception that escaped the reader or the engine
    log: list[str] = field(default_factory=list)  # the engine's error log lines
    events: list[dict[str, Any]] = field(default_factory=list)  # alert records

    @property
    def clean(self) -> bool:
        return not (self.alerts or self.dropped or self.exceptions or self.crash or self.bans)


@dataclass(frozen=True)
class Expectations:
    seconds: float
    seconds_per_mb: float
    non_ip: dict[int, str]  # link type -> name: refusing these is right
    expect: dict[str, dict[str, Any]]  # capture -> reviewed attack entry
    pending: dict[str, dict[str, Any]]  # capture -> known false positive, for now

    def budget(self, size: int) -> float:
        return self.seconds + self.seconds_per_mb * size / 1e6


class ExpectationsError(Exception):
    """The expectations file itself is wrong; one line."""


class _Lines(logging.Handler):
    """Keeps the engine's log lines (a traceback becomes its last line) for the
    capture being replayed, instead of letting them flood the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line += f": {type(exc).__name__}: {exc}"
        self.lines.append(line)


def find_captures(root: Path) -> list[Path]:
    """Every file under root that is a capture by its magic (gzip or not), sorted."""
    found = [Path(d) / f for d, _dirs, files in os.walk(root) for f in files]
    return sorted(p for p in found if looks_like_capture(str(p)))


def run_one(path: Path, root: Path, cfg: Config) -> Result:
    res = Result(name=path.relative_to(root).as_posix(), size=path.stat().st_size)
    sink = Collect()
    engine, enforcer = build_engine(cfg, sink)
    handler = _Lines()
    logger = logging.getLogger(_LOG)
    logger.addHandler(handler)
    logger.propagate = False
    start = time.perf_counter()
    try:
        with Capture(str(path)) as cap:
            res.non_ip, _last = feed(engine, cap)
        res.cut = cap.cut
    except UnsupportedLinkType as exc:
        res.refused, res.linktype = str(exc), exc.linktype
    except PcapError as exc:
        res.refused = str(exc)
    except Exception as exc:  # a reader or engine bug: the finding, not a crash of the run
        res.crash = f"{type(exc).__name__}: {exc}"
    finally:
        res.seconds = time.perf_counter() - start
        logger.removeHandler(handler)
        logger.propagate = True
    stats = engine.stats
    res.packets, res.accepted, res.dropped = (stats.packets, stats.count("accept"),
                                              stats.count("drop"))
    res.malformed, res.exceptions = sum(stats.malformed.values()), stats.exceptions
    res.alerts = Counter({k: v for k, v in stats.alerts.items() if v})
    res.bans = {ip: det for ip, _dur, det in enforcer.bans}
    res.log = handler.lines
    res.events = [r for r in sink.records if r.get("event_type") == "alert"]
    return res


def load_expectations(path: Path) -> Expectations:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ExpectationsError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{path}: {exc}") from None
    unknown = set(data) - {"budget", "non_ip_link_types", "expect", "pending"}
    if unknown:
        raise ExpectationsError(f"{path}: unknown tables {sorted(unknown)}")
    budget = data.get("budget", {})
    try:
        non_ip = {int(k): str(v) for k, v in data.get("non_ip_link_types", {}).items()}
    except ValueError:
        raise ExpectationsError(f"{path}: non_ip_link_types keys are link type numbers") from None
    expect, pending = data.get("expect", {}), data.get("pending", {})
    for table, entries in (("expect", expect), ("pending", pending)):
        for name, entry in entries.items():
            _check_entry(path, table, name, entry)
    return Expectations(float(budget.get("seconds", 10.0)),
                        float(budget.get("seconds_per_mb", 2.0)), non_ip, expect, pending)


def _check_entry(path: Path, table: str, name: str, entry: Any) -> None:
    where = f'{path}: [{table}."{name}"]'
    allowed = {"expect": {"reason", "alerts", "dropped", "bans"},
               "pending": {"reason", "today"}}[table]
    if not isinstance(entry, dict) or not str(entry.get("reason", "")).strip():
        raise ExpectationsError(f"{where} needs a one-line reason")
    if set(entry) - allowed:
        raise ExpectationsError(f"{where} unknown keys {sorted(set(entry) - allowed)}")
    if table == "pending":
        return
    alerts, dropped = entry.get("alerts", {}), entry.get("dropped", 0)
    if not isinstance(alerts, dict) or not all(isinstance(n, int) and n > 0
                                               for n in alerts.values()):
        raise ExpectationsError(f"{where} alerts = {{detector = minimum count, ...}}")
    if not isinstance(dropped, int) or dropped < 0:
        raise ExpectationsError(f"{where} dropped is a minimum count of dropped packets")
    if not alerts and not dropped:
        raise ExpectationsError(f"{where} expects neither alerts nor drops: delete it")
    if not isinstance(entry.get("bans", []), list):
        raise ExpectationsError(f"{where} bans is a list of addresses")


def differences(res: Result, exp: Expectations) -> list[str]:
    """How a capture's outcome differs from what the expectations allow."""
    out = _common(res, exp)
    if res.name in exp.expect:
        return out + _attack(res, exp.expect[res.name])
    if res.alerts:
        out.append(f"alerts {dict(res.alerts)}")
    if res.dropped:
        out.append(f"{res.dropped} packets dropped")
    if res.bans:
        out.append(f"banned {res.bans}")
    return out


def _common(res: Result, exp: Expectations) -> list[str]:
    out = []
    if res.crash:
        out.append(f"crashed: {res.crash}")
    if res.refused and (res.linktype is None or res.linktype not in exp.non_ip):
        out.append(f"refused: {res.refused}")
    if res.exceptions:
        first = f" (first: {res.log[0]})" if res.log else ""
        out.append(f"{res.exceptions} engine exceptions{first}")
    budget = exp.budget(res.size)
    if res.seconds > budget:
        out.append(f"took {res.seconds:.1f} s, budget {budget:.1f} s")
    return out


def _attack(res: Result, entry: dict[str, Any]) -> list[str]:
    """Each expected detector alerts at least so often, no other does, at least
    `dropped` packets are dropped and the listed sources are banned."""
    out = []
    want: dict[str, int] = entry.get("alerts", {})
    for det, minimum in sorted(want.items()):
        if res.alerts[det] < minimum:
            out.append(f"{res.alerts[det]} {det} alerts, expected at least {minimum}")
    extra = sorted(set(res.alerts) - set(want))
    if extra:
        out.append(f"alerts from detectors not expected: {extra}")
    if res.dropped < entry.get("dropped", 0):
        out.append(f"{res.dropped} packets dropped, expected at least {entry['dropped']}")
    for src in entry.get("bans", []):
        if src not in res.bans:
            out.append(f"{src} not banned (bans: {res.bans})")
    return out


@dataclass
class Report:
    results: list[Result]
    problems: list[str]  # every difference, one line each
    pending_left: int
    expected: int = 0  # captures with an [expect] entry

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(results: list[Result], exp: Expectations) -> Report:
    problems = []
    seen = {r.name for r in results}
    for res in results:
        diffs = differences(res, exp)
        if res.name in exp.pending:
            if not diffs:
                problems.append(f"{res.name}: pending, but no longer differs: remove its "
                                "[pending] entry")
            continue
        problems += [f"{res.name}: {d}" for d in diffs]
    for name in sorted((set(exp.expect) | set(exp.pending)) - seen):
        problems.append(f"{name}: in the expectations file, not in the corpus")
    return Report(results, problems, sum(1 for r in results if r.name in exp.pending),
                  sum(1 for r in results if r.name in exp.expect))


def summary(report: Report) -> str:
    res = report.results
    refused = Counter(_refusal_reason(r) for r in res if r.refused)
    read = [r for r in res if not r.refused and not r.crash]
    slowest = max(res, key=lambda r: r.seconds, default=None)
    parts = [
        f"{len(read)} captures read",
        f"{sum(refused.values())} refused"
        + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(refused.items()))})" if refused else ""),
        f"{sum(1 for r in res if r.alerts)} alerting ({report.expected} expected entries)",
        f"{sum(r.dropped for r in res)} dropped packets",
        f"{sum(r.exceptions for r in res)} exceptions",
        f"{sum(r.packets for r in res)} packets in {sum(r.seconds for r in res):.1f} s",
    ]
    if slowest is not None:
        parts.append(f"slowest {slowest.name} ({slowest.seconds:.2f} s)")
    parts.append(f"{report.pending_left} pending entries remain")
    return "corpus: " + ", ".join(parts)


def _refusal_reason(res: Result) -> str:
    if res.linktype is not None:
        return f"link type {res.linktype}"
    return "damaged" if "damaged" in (res.refused or "") else "not readable"


def run(root: Path, exp: Expectations, cfg: Config | None = None) -> Report:
    cfg = cfg or Config()
    return compare([run_one(p, root, cfg) for p in find_captures(root)], exp)


def show(report: Report) -> None:
    """Every capture that alerted, dropped or raised, with its alerts: for review."""
    for res in report.results:
        if res.clean:
            continue
        print(f"{res.name}: {res.packets} packets, {res.dropped} dropped, "
              f"alerts {dict(res.alerts)}, bans {res.bans}, exceptions {res.exceptions}")
        for ev in res.events[:10]:
            print(f"    {detector_of(ev)}: {ev['src_ip']}:{ev.get('src_port', '-')} -> "
                  f"{ev['dest_ip']}:{ev.get('dest_port', '-')} {ev['proto']}")
        for line in res.log[:3]:
            print(f"    log: {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--expected", type=Path, default=EXPECTED)
    ap.add_argument("--show", action="store_true", help="print every alerting capture")
    args = ap.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus: no corpus at {args.corpus}: skipped")
        return 1 if os.environ.get("CI") == "true" else 0
    try:
        report = run(args.corpus, load_expectations(args.expected))
    except ExpectationsError as exc:
        print(f"corpus: {exc}", file=sys.stderr)
        return 2
    if args.show:
        show(report)
    print(summary(report))
    for line in report.problems:
        print(f"  DIFFERS {line}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
