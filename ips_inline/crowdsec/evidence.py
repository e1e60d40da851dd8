"""The daemon's own bans, taken from its EVE records on their way to the log.

The engine emits an `alert` record for each hit and a `ban` record when a
source is banned; this sink passes every record on unchanged and keeps, per
(source, detector), the last signature and how many alerts led to the ban.
On the packet path it only touches a bounded dict and a list; the state file
(the push queue) is written later, by flush(), from the ban worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..enforce.addr import parse_ip
from ..eve import EventSink, detector_of
from . import state

log = logging.getLogger(__name__)
MAX_SOURCES = 4096  # (source, detector) pairs whose evidence is remembered
MAX_WAITING = 4096  # bans waiting for flush(); far above bans.max_per_minute


class EvidenceTap:
    def __init__(self, inner: EventSink, clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self._waiting: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # flush() runs in another thread
        self.lost = 0

    def wants(self, event_type: str) -> bool:
        return self.inner.wants(event_type)

    def emit(self, record: dict[str, Any]) -> None:
        self.inner.emit(record)
        kind = record.get("event_type")
        if kind == "alert" and record.get("alert", {}).get("action") == "blocked":
            self._note(record)
        elif kind == "ban":
            self._ban(record)

    def _note(self, record: dict[str, Any]) -> None:
        key = (record.get("src_ip", ""), detector_of(record) or "")
        _sig, seen = self._seen.pop(key, ("", 0))
        self._seen[key] = (str(record["alert"].get("signature", "")), seen + 1)
        if len(self._seen) > MAX_SOURCES:
            self._seen.popitem(last=False)

    def _ban(self, record: dict[str, Any]) -> None:
        raw_ip, detector = record.get("src_ip", ""), detector_of(record) or ""
        ban = record.get("ban") if isinstance(record.get("ban"), dict) else record
        signature, seen = self._seen.pop((raw_ip, detector), ("", 0))
        try:
            ip = parse_ip(raw_ip)  # the state file keeps canonical addresses only
        except ValueError:
            return
        now, duration = self.clock(), int(ban.get("duration", 0))
        item = {"op": "ban", "ip": ip, "detector": detector, "signature": signature,
                "alerts": max(1, seen), "count": int(ban.get("count", 1)),
                "duration": duration, "at": round(now, 3), "until": round(now + duration, 3)}
        with self._lock:
            if len(self._waiting) >= MAX_WAITING:
                self.lost += 1
                return
            self._waiting.append(item)

    def waiting(self) -> bool:
        return bool(self._waiting or self.lost)

    def flush(self, store: Any, limit: int) -> None:
        """Move waiting bans into the state file's push queue (one write).
        Called off the packet path; a failed write keeps them for the next."""
        with self._lock:
            items, lost = list(self._waiting), self.lost
        if not items and not lost:
            return

        def change(_bans: dict, section: dict) -> int:
            state.count_dropped(section, lost)
            return state.enqueue(section, items, limit)

        dropped = store.update(change, section=state.SECTION)
        with self._lock:
            del self._waiting[:len(items)]
            self.lost -= lost
        if dropped or lost:
            log.warning("crowdsec push queue full: %d oldest pushes dropped",
                        dropped + lost)
