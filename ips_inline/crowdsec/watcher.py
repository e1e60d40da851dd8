"""Watcher side: our bans go to LAPI as alerts carrying one decision each.

The push queue is in the state file (state.py). Each round takes the queue in
order: a ban becomes `POST /v1/alerts` (scenario ips-inline/<detector>,
origin ips-inline, scope Ip, the ban's remaining time), then the decision ids
LAPI made of it are read back and kept, for `unban` to delete exactly those
and for the bouncer to recognise its own decisions in the stream. A ban that
ended while LAPI was away is not pushed (counted "expired"); one LAPI refuses
is dropped (counted "refused"); on any other failure the round stops and the
rest waits for the next try.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..config import DETECTOR_NAMES
from ..enforce.store import BanStore
from . import state
from .client import LapiClient, LapiError, Refused

log = logging.getLogger(__name__)
ORIGIN = "ips-inline"
SCENARIOS = tuple(f"ips-inline/{name}" for name in (*DETECTOR_NAMES, "manual"))
PUSH_RESULTS = ("ok", "retry", "refused", "dropped", "expired")
ROUND_MAX = 64  # queue items handled per round, so a long backlog does not starve pulls


def scenario(detector: str) -> str:
    return f"ips-inline/{detector}"


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_alert(item: dict[str, Any], now: float) -> dict[str, Any]:
    """The alert for one queued ban: its evidence in message and meta, one
    decision for the time the ban has left (LAPI ends it at stop_at +
    duration; stop_at is now, and the floor keeps it within our own ban)."""
    ip, detector, signature = item["ip"], item["detector"], item["signature"]
    remaining = max(1, math.floor(item["until"] - now))
    meta = {"detector": detector, "signature": signature, "count": str(item["count"]),
            "ban_duration": str(item["duration"]), "banned_at": iso(item["at"])}
    what = f"{detector} ({signature})" if signature else detector
    return {
        "scenario": scenario(detector), "scenario_hash": "", "scenario_version": __version__,
        "message": f"ips-inline: {what} from {ip}, ban #{item['count']} for "
                   f"{item['duration']}s",
        "events_count": int(item.get("alerts", 1)), "start_at": iso(now), "stop_at": iso(now),
        "capacity": 0, "leakspeed": "0", "simulated": False,
        "source": {"scope": "Ip", "value": ip, "ip": ip},
        "events": [{"timestamp": iso(item["at"]),
                    "meta": [{"key": "detector", "value": detector},
                             {"key": "signature", "value": signature}]}],
        "meta": [{"key": k, "value": v} for k, v in meta.items()],
        "decisions": [{"origin": ORIGIN, "type": "ban", "scope": "Ip", "value": ip,
                       "duration": f"{remaining}s", "scenario": scenario(detector)}],
    }


class Watcher:
    def __init__(self, store: BanStore, client: LapiClient,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.results: Counter[str] = Counter({r: 0 for r in PUSH_RESULTS})
        self.own: set[int] = set()  # decision ids we pushed (the bouncer skips them)
        self.queued = 0  # pushes waiting, as of the last round
        self.dropped = 0  # from the state file: shared with workers and the CLI

    def load(self) -> None:
        section = self.store.load_section(state.SECTION)
        self.own = state.own_ids(section)
        self.queued = len(state.pending(section))
        self.dropped = state.dropped(section)

    def push(self, stop: Callable[[], bool] = lambda: False) -> int:
        """One round; returns how many items went to LAPI, or raises LapiError
        (after saving what was done) if LAPI failed. `stop()` ends it early."""
        section = self.store.load_section(state.SECTION)
        now = self.clock()
        items, known = state.pending(section), state.pushed(section)
        self.queued = len(items)  # also when nothing gets done: the agent retries while > 0
        done: set[int] = set()
        records: dict[str, list[dict[str, Any]]] = {}
        unbanned: set[str] = set()
        failure: LapiError | None = None
        exchanged = 0
        for item in items[:ROUND_MAX]:
            if stop():
                break
            try:
                exchanged += self._one(item, now, known, records, unbanned)
            except Refused as exc:
                self.results["refused"] += 1
                log.error("crowdsec: LAPI refused the %s of %s, dropped: %s",
                          item["op"], item["ip"], exc)
            except LapiError as exc:
                self.results["retry"] += 1
                failure = exc
                break
            done.add(item["seq"])
        self._commit(done, records, unbanned)
        if failure is not None:
            raise failure
        return exchanged

    def _one(self, item: dict[str, Any], now: float, known: dict, records: dict,
             unbanned: set[str]) -> bool:
        """Push one queue item; False if it was dropped without asking LAPI."""
        ip = item["ip"]
        if item["op"] == "unban":
            mine = known.get(ip, []) + records.pop(ip, [])
            for rec in mine:
                for ident in rec["decisions"] or self.client.alert_decisions(rec["alert"]):
                    self.client.delete_decision(ident)
            known.pop(ip, None)
            unbanned.add(ip)
            if mine:
                self.results["ok"] += 1
                log.info("crowdsec: deleted the decisions pushed for %s", ip)
            return bool(mine)
        if item["until"] - now < 1:
            self.results["expired"] += 1
            return False
        alert_id = self.client.post_alerts([build_alert(item, now)])[0]
        try:
            decisions = self.client.alert_decisions(alert_id)
        except LapiError:  # pushed all the same; the ids are looked up when needed
            decisions = []
        records.setdefault(ip, []).append({"alert": alert_id, "decisions": decisions,
                                           "until": item["until"]})
        self.own.update(decisions)
        self.results["ok"] += 1
        log.info("crowdsec: pushed the %s ban of %s (alert %s)", item["detector"], ip, alert_id)
        return True

    def _commit(self, done: set[int], records: dict, unbanned: set[str]) -> None:
        now = self.clock()

        def change(_bans: dict, section: dict) -> None:
            state.remove(section, done)
            known = state.pushed(section)
            for ip in unbanned:
                known.pop(ip, None)
            for ip, recs in records.items():
                known.setdefault(ip, []).extend(recs)
            state.prune_pushed(known, now)
            section["pushed"] = known
            self.queued = len(state.pending(section))
            self.dropped = state.dropped(section)
            self.own = state.own_ids(section)

        if done or records or unbanned:
            self.store.update(change, section=state.SECTION)
