"""The collector's permanent generation: frozen once the engine is built."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ips_inline import heap


@pytest.fixture(autouse=True)
def _thaw() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_settle_freezes_what_is_alive() -> None:
    keep = Node()
    assert heap.settle() > 0
    assert gc.get_freeze_count() >= 1
    assert keep.me is keep


def test_full_collections_are_rarer() -> None:
    """Each full collection walks every flow: while the table fills they
    were 15% of the engine's time."""
    young = gc.get_threshold()[0]
    heap.settle()
    assert gc.get_threshold() == (young, 10, heap.FULL_AFTER)
    assert heap.FULL_AFTER > 10


def test_a_reload_frees_what_the_last_settle_froze() -> None:
    """A replaced ruleset frozen by the last settle() must not live forever."""
    old = Node()
    ref = weakref.ref(old)
    heap.settle()
    del old
    heap.settle()
    assert ref() is None


def test_the_replay_settles_after_building_its_engine(tmp_path, monkeypatch) -> None:
    import io

    from ips_inline import replay as replay_mod
    from ips_inline.config import Config

    calls: list[int] = []
    monkeypatch.setattr(replay_mod.heap, "settle", lambda: calls.append(1) or 0)
    pcap = tmp_path / "empty.pcap"
    pcap.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    replay_mod.replay([str(pcap)], Config(), io.StringIO(), None)
    assert calls == [1]
