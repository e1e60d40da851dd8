"""The bounded push queue in the state file: order, bound, counting, surviving
a restart and the other writers of the file, and damaged entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ips_inline.config import Config, from_dict
from ips_inline.crowdsec import queue_manual_ban, queue_unban, state
from ips_inline.enforce.store import BanStore

SECTION = state.SECTION


def ban_item(ip: str, until: float = 2e9) -> dict:
    return {"op": "ban", "ip": ip, "detector": "sqli", "signature": "SQL injection in HTTP request",
            "alerts": 3, "count": 1, "duration": 300, "at": until - 300, "until": until}


def watcher_cfg(limit: int = 1024) -> Config:
    return from_dict({"crowdsec": {"lapi_url": "http://127.0.0.1:8080", "machine_id": "m",
                                   "password": "p", "push_queue_max": limit}})


def test_queue_keeps_order_and_drops_the_oldest_beyond_its_bound() -> None:
    section: dict = {}
    assert state.enqueue(section, [ban_item(f"192.0.2.{i}") for i in range(1, 4)], 5) == 0
    assert state.enqueue(section, [ban_item(f"192.0.2.{i}") for i in range(4, 9)], 5) == 3
    assert [i["ip"] for i in state.pending(section)] == [f"192.0.2.{i}" for i in range(4, 9)]
    assert [i["seq"] for i in state.pending(section)] == [4, 5, 6, 7, 8]
    assert state.dropped(section) == 3


def test_removal_by_seq_keeps_what_was_appended_meanwhile() -> None:
    section: dict = {}
    state.enqueue(section, [ban_item("192.0.2.1"), ban_item("192.0.2.2")], 10)
    taken = {i["seq"] for i in state.pending(section)}
    state.enqueue(section, [ban_item("192.0.2.3")], 10)  # a worker, while the agent pushed
    state.remove(section, taken)
    assert [i["ip"] for i in state.pending(section)] == ["192.0.2.3"]


def test_unban_cancels_unsent_pushes_of_that_address_only() -> None:
    section: dict = {}
    state.enqueue(section, [ban_item("192.0.2.1"), ban_item("192.0.2.2"),
                            ban_item("192.0.2.1")], 10)
    assert state.cancel_bans(section, "192.0.2.1") == 2
    assert [i["ip"] for i in state.pending(section)] == ["192.0.2.2"]


@pytest.mark.parametrize("bad", [
    "x", None, {"op": "ban"}, {**ban_item("192.0.2.1"), "seq": 1, "ip": "not-an-ip"},
    {**ban_item("192.0.2.1"), "seq": 1, "ip": "192.0.2.01"}, {**ban_item("192.0.2.1"), "seq": "1"},
    {**ban_item("192.0.2.1"), "seq": 1, "until": float("nan")},
    {**ban_item("192.0.2.1"), "seq": 1, "signature": "x" * 1000},
    {**ban_item("192.0.2.1"), "seq": 1, "op": "drop-table"},
])
def test_damaged_queue_entries_are_dropped(bad: object) -> None:
    good = {**ban_item("192.0.2.9"), "seq": 2}
    assert state.pending({"pending": [bad, good]}) == [good]
    assert state.pending({"pending": "garbage"}) == []


def test_the_queue_survives_other_writers_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = BanStore(str(path))
    queue_manual_ban(watcher_cfg(), store, "192.0.2.5", 600, 1, now=1e9)
    # The daemon's ban worker and `ips-inline unban` rewrite the file their own way.
    store.record_ban("192.0.2.6", 2e9, "sqli", 1)
    store.remove("192.0.2.6")
    store.prune(2e9, 1.0)
    reread = BanStore(str(path)).load_section(SECTION)  # a new process: from the file
    assert [(i["ip"], i["detector"], i["until"]) for i in state.pending(reread)] == [
        ("192.0.2.5", "manual", 1e9 + 600)]
    assert json.loads(path.read_text())["version"] == 1


def test_manual_ban_and_unban_queue_only_with_a_watcher(tmp_path: Path) -> None:
    store = BanStore(str(tmp_path / "state.json"))
    assert not queue_manual_ban(Config(), store, "192.0.2.5", 600, 1)
    assert not queue_unban(Config(), store, "192.0.2.5")
    assert store.load_section(SECTION) == {}
    cfg = watcher_cfg()
    assert queue_manual_ban(cfg, store, "192.0.2.5", 600, 1)
    assert queue_unban(cfg, store, "192.0.2.5")  # cancels the push, queues the delete
    ops = [(i["op"], i["ip"]) for i in state.pending(store.load_section(SECTION))]
    assert ops == [("unban", "192.0.2.5")]
    assert not queue_unban(cfg, store, "192.0.2.77")  # never pushed: nothing to do


def test_unban_of_a_pushed_address_queues_the_delete(tmp_path: Path) -> None:
    store = BanStore(str(tmp_path / "state.json"))
    store.update(lambda _b, s: s.update(pushed={"192.0.2.5": [
        {"alert": "3", "decisions": [7], "until": 2e9}]}), section=SECTION)
    assert queue_unban(watcher_cfg(), store, "192.0.2.5")
    assert state.pending(store.load_section(SECTION))[0]["op"] == "unban"


def test_pushed_records_are_pruned_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_PUSHED", 3)
    records = {f"192.0.2.{i}": [{"alert": str(i), "decisions": [i], "until": 100.0 + i}]
               for i in range(1, 7)}
    records["192.0.2.1"][0]["until"] = 5.0
    state.prune_pushed(records, 50.0)
    assert sorted(records) == ["192.0.2.4", "192.0.2.5", "192.0.2.6"]


def test_origin_of_ban_entries() -> None:
    assert state.origin_of({"detector": "sqli"}) == "local"
    assert state.origin_of({"detector": "manual"}) == "manual"
    assert state.origin_of({"detector": "x", "origin": "crowdsec:cscli"}) == "crowdsec:cscli"
    assert state.origin_of({"detector": "x", "origin": "forged"}) == "local"
