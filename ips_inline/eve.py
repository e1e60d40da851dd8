"""EVE JSON records, one object per line, shaped like Suricata's eve.json so
existing tools (jq recipes, Filebeat's Suricata module) read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from .decode import PROTO_NAMES, Packet, format_ip
from .detectors.base import Signature

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


class Collect:
    """A sink that keeps records in memory (tests, replay summaries)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)
