"""EVE JSON records, one object per line, shaped like Suricata's eve.json so
existing tools (jq recipes, Filebeat's Suricata module) read them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from .detectors.base import Signature
from .packet.decode import PROTO_NAMES, Packet, format_ip

GID = 1
REV = 1


class EventSink(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...


def timestamp(now: float) -> str:
    """Suricata's format: 2026-11-27T14:36:47.123456+0000."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def alert_record(pkt: Packet, detector: str, sig: Signature, blocked: bool, now: float) -> dict:
    return {
        "timestamp": timestamp(now),
        "event_type": "alert",
        "src_ip": pkt.src_ip,
        "src_port": pkt.sport,
        "dest_ip": pkt.dst_ip,
        "dest_port": pkt.dport,
        "proto": PROTO_NAMES.get(pkt.proto, str(pkt.proto)),
        "detector": detector,
        "alert": {
            "action": "blocked" if blocked else "allowed",
            "gid": GID,
            "signature_id": sig.sid,
            "rev": REV,
            "signature": sig.msg,
            "category": sig.category,
            "severity": sig.severity,
        },
    }


def ban_record(src: bytes, detector: str, duration: int, count: int, now: float) -> dict:
    return {
        "timestamp": timestamp(now),
        "event_type": "ban",
        "src_ip": format_ip(src),
        "detector": detector,
        "duration": duration,
        "count": count,
    }


def unban_record(src: bytes, reason: str, now: float) -> dict:
    return {"timestamp": timestamp(now), "event_type": "unban", "src_ip": format_ip(src),
            "reason": reason}


class JsonLines:
    """Writes each record as one JSON line and flushes, so `tail -f` and log
    shippers see it at once."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def emit(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stream.flush()


class AlertBudget:
    """At most `per_second` alert records a second pass to `sink`; the rest are
    counted and reported in one `alert_suppressed` record per second. A flood
    of spoofed sources, each a new alert, would otherwise fill the disk
    (measured: 360 bytes per packet). Other records always pass; every alert
    is still counted in ips_inline_alerts_total. Live only: replay logs all."""

    def __init__(self, sink: EventSink, per_second: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.sink = sink
        self.per_second = per_second
        self.clock = clock
        self.start = 0.0
        self.passed = 0
        self.suppressed = 0

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("event_type") != "alert":
            self.sink.emit(record)
            return
        self.tick()
        if self.passed < self.per_second:
            self.passed += 1
            self.sink.emit(record)
        else:
            self.suppressed += 1

    def tick(self) -> None:
        """Start a new second if one has passed (also called when idle, so the
        last suppressed count is reported without waiting for a new alert)."""
        now = self.clock()
        if now - self.start < 1.0:
            return
        if self.suppressed:
            self.sink.emit({"timestamp": timestamp(now), "event_type": "alert_suppressed",
                            "count": self.suppressed})
        self.start, self.passed, self.suppressed = now, 0, 0


class Collect:
    """A sink that keeps records in memory (tests, replay summaries)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)
