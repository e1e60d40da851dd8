"""The warm-up rounds: the real code path, a private engine, no effects."""

from __future__ import annotations

from conftest import Harness
from packets import ping

from ips_inline.config import Config
from ips_inline.engine import REASONS
from ips_inline.packet.decode import PROTO_ICMP, PROTO_TCP, PROTO_UDP, SYN, decode
from ips_inline.warm import PACKETS, Warmer

CLEAN = REASONS.index(("accept", "clean"))


def test_the_round_takes_the_common_paths() -> None:
    packets = [decode(p) for p in PACKETS]  # a malformed one would raise
    assert [p.proto for p in packets] == [PROTO_TCP, PROTO_TCP, PROTO_ICMP, PROTO_UDP]
    assert packets[0].flags & SYN and len(PACKETS[0]) > 40  # a SYN with options
    assert packets[2].icmp_type == 8  # an echo request: icmp_flood counts it


def test_rounds_stay_clean_and_small_however_many() -> None:
    warmer = Warmer(Config())
    for _ in range(5000):
        warmer.run()
    stats = warmer.engine.stats
    assert stats.verdicts[CLEAN] == 5000 * len(PACKETS)
    assert not any(stats.alerts.values()) and not stats.bans and not stats.exceptions
    assert sum(len(t) for t in warmer.engine.tables()) <= 4  # one round's entries at most


def test_even_a_detector_that_fires_on_anything_never_bans() -> None:
    cfg = Config()
    cfg.detectors["icmp_flood"].threshold = 0  # every echo is a flood
    warmer = Warmer(cfg)
    for _ in range(50):
        warmer.run()
    assert warmer.engine.stats.alerts["icmp_flood"] == 50
    assert not warmer.engine.bans.active and cfg.detectors["icmp_flood"].ban_after == 1


def test_the_real_engine_sees_nothing_of_it() -> None:
    h = Harness(Config())
    warmer = Warmer(h.cfg)
    for _ in range(100):
        warmer.run()
    assert h.engine.stats.packets == 0
    assert all(len(t) == 0 for t in h.engine.tables())
    assert h.feed(ping()) == [True]  # and works as before
    assert warmer.engine is not h.engine and warmer.engine.flows is not h.engine.flows


def test_reload_rebuilds_the_shadow_with_the_new_config() -> None:
    warmer = Warmer(Config())
    cfg = Config()
    cfg.detectors["icmp_flood"].enabled = False
    warmer.reconfigure(cfg)
    assert "icmp_flood" not in [d.name for d in warmer.engine.detectors]
