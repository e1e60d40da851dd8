"""Pushing our bans: the evidence taken from the engine's EVE records, the alert
LAPI gets, and the queue's fate on success, refusal, outage and unban."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Harness
from packets import Conn, http_get

from ips_inline.config import Config
from ips_inline.crowdsec import state
from ips_inline.crowdsec.client import LapiError, Refused, Unreachable
from ips_inline.crowdsec.evidence import EvidenceTap
from ips_inline.crowdsec.watcher import Watcher, build_alert
from ips_inline.enforce.store import BanStore
from ips_inline.eve import Collect

NOW = 1_800_000_000.0


class FakeClient:
    """LapiClient's watcher calls, recorded; `fail` makes the next call raise."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        self.deleted: list[int] = []
        self.fail: dict[str, LapiError] = {}
        self.next_id = 100

    def _maybe_fail(self, call: str) -> None:
        if call in self.fail:
            raise self.fail.pop(call)

    def post_alerts(self, alerts: list[dict]) -> list[str]:
        self._maybe_fail("post")
        self.alerts += alerts
        self.next_id += 1
        return [str(self.next_id)]

    def alert_decisions(self, alert_id: str) -> list[int]:
        self._maybe_fail("get")
        return [int(alert_id) + 1000]

    def delete_decision(self, ident: int) -> None:
        self._maybe_fail("delete")
        self.deleted.append(ident)


def item(ip: str, until: float = NOW + 300, detector: str = "sqli") -> dict:
    return {"op": "ban", "ip": ip, "detector": detector,
            "signature": "SQL injection in HTTP request", "alerts": 3, "count": 2,
            "duration": 300, "at": until - 300, "until": until}


class World:
    def __init__(self, tmp: Path) -> None:
        self.store = BanStore(str(tmp / "state.json"))
        self.client = FakeClient()
        self.now = NOW
        self.watcher = Watcher(self.store, self.client, clock=lambda: self.now)  # type: ignore

    def queue(self, *items: dict) -> None:
        self.store.update(lambda _b, s: state.enqueue(s, list(items), 100), section=state.SECTION)

    def section(self) -> dict:
        return self.store.load_section(state.SECTION)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_the_alert_carries_the_evidence_and_one_decision() -> None:
    alert = build_alert(item("203.0.113.7"), NOW + 10.5)
    assert alert["scenario"] == "ips-inline/sqli"
    assert alert["source"] == {"scope": "Ip", "value": "203.0.113.7", "ip": "203.0.113.7"}
    assert alert["decisions"] == [{"origin": "ips-inline", "type": "ban", "scope": "Ip",
                                   "value": "203.0.113.7", "duration": "289s",
                                   "scenario": "ips-inline/sqli"}]
    assert alert["start_at"] == alert["stop_at"] == "2027-01-15T08:00:10.500000Z"
    meta = {m["key"]: m["value"] for m in alert["meta"]}
    assert meta["detector"] == "sqli" and meta["signature"] == "SQL injection in HTTP request"
    assert meta["count"] == "2" and meta["ban_duration"] == "300"
    assert "SQL injection in HTTP request" in alert["message"] and "#2" in alert["message"]
    assert alert["events_count"] == 3
    required = {"scenario", "scenario_hash", "scenario_version", "message", "events_count",
                "start_at", "stop_at", "capacity", "leakspeed", "simulated", "events", "source"}
    assert required <= set(alert)


def test_pushed_bans_leave_the_queue_and_are_remembered(world: World) -> None:
    world.queue(item("203.0.113.7"), item("2001:db8::7"))
    assert world.watcher.push() == 2
    assert [a["source"]["value"] for a in world.client.alerts] == ["203.0.113.7", "2001:db8::7"]
    section = world.section()
    assert state.pending(section) == []
    assert state.pushed(section)["203.0.113.7"] == [
        {"alert": "101", "decisions": [1101], "until": NOW + 300}]
    assert world.watcher.own == {1101, 1102}
    assert world.watcher.results["ok"] == 2


def test_an_outage_keeps_the_rest_for_later_in_order(world: World) -> None:
    world.queue(item("203.0.113.1"), item("203.0.113.2"), item("203.0.113.3"))
    world.client.fail["post"] = Unreachable("LAPI POST /v1/alerts: ConnectionError")
    with pytest.raises(Unreachable):
        world.watcher.push()
    assert [i["ip"] for i in state.pending(world.section())] == [
        "203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert world.watcher.results["retry"] == 1 and world.watcher.queued == 3
    world.now += 20  # LAPI is back
    world.watcher.push()
    assert [a["source"]["value"] for a in world.client.alerts] == [
        "203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert world.client.alerts[0]["decisions"][0]["duration"] == "280s"  # what is left


def test_a_ban_over_before_lapi_came_back_is_not_pushed(world: World) -> None:
    world.queue(item("203.0.113.1", until=NOW + 0.5), item("203.0.113.2"))
    world.watcher.push()
    assert [a["source"]["value"] for a in world.client.alerts] == ["203.0.113.2"]
    assert world.watcher.results["expired"] == 1


def test_a_refused_push_is_dropped_not_retried_forever(world: World) -> None:
    world.queue(item("203.0.113.1"), item("203.0.113.2"))
    world.client.fail["post"] = Refused("LAPI POST /v1/alerts: HTTP 400", 400)
    world.watcher.push()
    assert state.pending(world.section()) == []
    assert world.watcher.results["refused"] == 1 and len(world.client.alerts) == 1


def test_decision_ids_unknown_after_a_push_are_looked_up_at_unban(world: World) -> None:
    world.queue(item("203.0.113.7"))
    world.client.fail["get"] = Unreachable("gone")
    world.watcher.push()
    assert state.pushed(world.section())["203.0.113.7"][0]["decisions"] == []
    world.queue({"op": "unban", "ip": "203.0.113.7"})
    world.watcher.push()
    assert world.client.deleted == [1101]
    assert state.pushed(world.section()) == {} and state.pending(world.section()) == []


def test_unban_deletes_exactly_what_was_pushed(world: World) -> None:
    world.queue(item("203.0.113.7"), item("203.0.113.8"), item("203.0.113.7", until=NOW + 600))
    world.watcher.push()
    world.queue({"op": "unban", "ip": "203.0.113.7"})
    world.client.fail["delete"] = Unreachable("down")
    with pytest.raises(Unreachable):
        world.watcher.push()
    assert state.pending(world.section())[0]["op"] == "unban"  # kept for the retry
    world.watcher.push()
    assert sorted(world.client.deleted) == [1101, 1103]
    assert list(state.pushed(world.section())) == ["203.0.113.8"]


def test_the_tap_turns_engine_records_into_queued_pushes(tmp_path: Path) -> None:
    collect = Collect()
    tap = EvidenceTap(collect, clock=lambda: NOW)
    harness = Harness(Config())
    harness.engine.sink = tap
    for i in range(3):
        conn = Conn(sport=40000 + i)
        attack = http_get(f"/item?id=1%27%20OR%20%27{i}%27%3D%27{i}")
        harness.feed(*conn.handshake(), conn.send(attack))
    assert [r["event_type"] for r in collect.records].count("ban") == 1  # passed on unchanged
    assert tap.waiting()
    store = BanStore(str(tmp_path / "state.json"))
    tap.flush(store, 100)
    assert not tap.waiting()
    (queued,) = state.pending(store.load_section(state.SECTION))
    assert queued["detector"] == "sqli" and queued["signature"] == "SQL injection in HTTP request"
    assert queued["alerts"] == 3 and queued["count"] == 1
    assert queued["until"] == NOW + queued["duration"]
