"""The ban worker thread (LiveEnforcer) with a stand-in for the kernel set:
bans queued during a storm are applied in order and written to the store in
batches, not one state-file rewrite per ban."""

from __future__ import annotations

import threading
from pathlib import Path

from ips_inline.enforce.ipset import SetFull
from ips_inline.enforce.live import BanFailures, LiveEnforcer
from ips_inline.enforce.store import BanStore


class FakeSet:
    def __init__(self, full_after: int = 10**9) -> None:
        self.added: list[str] = []
        self.full_after = full_after
        self.counts = 0
        self.closed = False

    def add(self, ip: str, timeout: int) -> None:
        if len(self.added) >= self.full_after:
            raise SetFull(ip)
        self.added.append(ip)

    def count(self) -> int:
        self.counts += 1
        return len(self.added)

    def close(self) -> None:
        self.closed = True


class CountingStore(BanStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writes = 0

    def update(self, change):
        self.writes += 1
        return super().update(change)


def test_a_ban_storm_is_applied_in_order_and_stored_in_few_writes(tmp_path: Path) -> None:
    ipset, store = FakeSet(full_after=250), CountingStore(str(tmp_path / "state.json"))
    failures = BanFailures()
    live = LiveEnforcer(ipset, store, failures)
    gate = threading.Event()
    live.start()
    live.call(lambda _s: gate.wait(10))  # hold the worker until the storm is queued
    ips = [f"192.0.2.{i}" if i < 256 else f"198.51.100.{i - 256}" for i in range(300)]
    for ip in ips:
        live.ban(ip, 60, "port_scan", 1)
    seen: list[int] = []
    live.call(lambda s: seen.append(len(s.added)))  # runs after every ban queued before it
    gate.set()
    live.stop()
    assert ipset.added == ips[:250] and failures.set_full == 50
    assert seen == [250]
    assert sorted(store.load()) == sorted(ips[:250])
    assert store.writes <= 2  # 256 bans a write
    assert ipset.closed
