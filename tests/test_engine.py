"""Engine behaviour across detectors: policy, whitelist, shadow mode, bounded
state, escalation, and that malformed input never escapes."""

from __future__ import annotations

import random

from conftest import Harness
from packets import CLIENT, Conn, http_get, ping, tcp

from ips_inline.bans import BanManager, RecordingEnforcer, Whitelist
from ips_inline.config import BanConfig, Config, DetectorConfig
from ips_inline.engine import REASONS
from ips_inline.packet.decode import PROTO_ICMP


def verdict_count(h: Harness, verdict: str, reason: str) -> int:
    return h.engine.stats.verdicts[REASONS.index((verdict, reason))]


def null_scan(ports: int = 6) -> list[bytes]:
    return [tcp(flags="", dport=1000 + p) for p in range(ports)]


def test_banned_source_is_dropped_without_detection(harness) -> None:
    harness.feed(*null_scan())  # a null scan of 6 ports: banned
    assert harness.feed(ping(), tcp(flags="S", dport=80)) == [False, False]
    assert verdict_count(harness, "drop", "banned") == 2


def test_ban_expires(harness) -> None:
    harness.feed(*null_scan())
    harness.now += harness.cfg.bans.base_duration + 1
    assert harness.feed(ping()) == [True]


def test_whitelist_is_never_dropped_or_banned() -> None:
    """Whitelisted sources are accepted uninspected, as the kernel does
    before the queue: no drop, no ban, no alert, whatever they send."""
    cfg = Config()
    cfg.engine.whitelist = ["10.77.0.0/24"]
    h = Harness(cfg)
    conn = Conn()
    assert all(h.feed(*null_scan(20), *[ping(seq=i) for i in range(100)], *conn.handshake(),
                      conn.send(http_get("/?id=1%27%20or%201=1--"))))
    assert not h.banned() and not h.alerts()
    assert verdict_count(h, "accept", "whitelist") == h.engine.stats.packets


def test_alert_mode_logs_but_never_drops() -> None:
    cfg = Config()
    cfg.detectors["sqli"].mode = "alert"
    h = Harness(cfg)
    for i in range(5):
        conn = Conn(sport=43000 + i)
        assert all(h.feed(*conn.handshake(), conn.send(http_get("/?id=1%27%20or%201=1--"))))
    assert [a["alert"]["action"] for a in h.alerts()] == ["allowed"] * 5
    assert not h.banned()


def test_flood_alerts_are_rate_limited_in_the_log(make_harness) -> None:
    cfg = Config()
    cfg.detectors["icmp_flood"].mode = "alert"
    h = make_harness(cfg)
    h.feed(*[ping(seq=i) for i in range(400)], step=0.001)
    assert len(h.alerts()) == 1
    assert h.engine.stats.alerts["icmp_flood"] > 300


def test_malformed_counted_and_policy_applied() -> None:
    h = Harness()
    assert h.feed(b"\x45\x00", b"") == [True, True]
    assert sum(h.engine.stats.malformed.values()) == 2
    cfg = Config()
    cfg.engine.malformed_policy = "drop"
    assert Harness(cfg).feed(b"\x45\x00") == [False]


class _Boom:
    """A detector with a bug. Injected as a Python object: the methods of a
    compiled detector cannot be monkeypatched."""

    name = "icmp_flood"
    protocols = (PROTO_ICMP,)
    payload = proof_required = False

    def __init__(self, cfg: DetectorConfig, _ctx: object = None) -> None:
        self.cfg = cfg

    @staticmethod
    def fires_on(flags: int) -> bool:
        return True

    def inspect(self, pkt, flow, now):
        raise RuntimeError("detector bug")

    def evidence(self, pkt, now) -> dict[str, list[str]]:
        return {}


def test_detector_exception_gets_policy_verdict(harness) -> None:
    harness.engine._dispatch[PROTO_ICMP] = (_Boom(harness.cfg.detectors["icmp_flood"]),)
    assert harness.feed(ping()) == [True]
    assert harness.engine.stats.exceptions == 1
    assert verdict_count(harness, "accept", "error") == 1


def test_random_source_syn_flood_keeps_state_bounded() -> None:
    cfg = Config()
    cfg.engine.max_sources = cfg.engine.max_flows = 500
    h = Harness(cfg)
    rng = random.Random(7)
    for _ in range(5000):
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        h.feed(tcp(src=src, sport=rng.randrange(1024, 65535)), step=0.0001)
    for table in h.engine.tables():
        assert len(table) <= 500, table.name
    assert h.engine.flows.syn.evictions > 0
    assert len(h.engine.flows.half_open_by_src) <= 500


def test_escalation_lengthens_repeat_bans() -> None:
    cfg = BanConfig(base_duration=60, factor=3.0, max_duration=1000)
    rec = RecordingEnforcer()
    bans = BanManager(cfg, Whitelist([]), rec)
    now = 0.0
    for _ in range(4):
        assert bans.offence(b"\x0a\x00\x00\x01", "sqli", 1, now, proven=True)
        now += 2000
    assert [d for _ip, d, _det in rec.bans] == [60, 180, 540, 1000]


def test_forgeable_evidence_never_escalates() -> None:
    """Scans and floods can be sent in anyone's name: however often a source
    is banned for them, each ban lasts base_duration."""
    cfg = BanConfig(base_duration=60, factor=3.0, max_duration=1000)
    rec = RecordingEnforcer()
    bans = BanManager(cfg, Whitelist([]), rec)
    now = 0.0
    for _ in range(5):
        assert bans.offence(b"\x0a\x00\x00\x01", "null_scan", 1, now)
        now += 2000
    assert [d for _ip, d, _det in rec.bans] == [60] * 5
    bans.offence(b"\x0a\x00\x00\x01", "sqli", 1, now, proven=True)  # the first proven one
    assert rec.bans[-1][1] == 60


def test_ban_rate_cap_is_per_detector() -> None:
    rec = RecordingEnforcer()
    bans = BanManager(BanConfig(max_per_minute=5), Whitelist([]), rec)
    for i in range(20):
        bans.offence(bytes([10, 0, 1, i]), "null_scan", 1, 1.0)
    assert len(rec.bans) == 5 and bans.rate_capped == 15
    # a storm of one kind does not use up the bans of another
    assert bans.offence(bytes([10, 0, 2, 1]), "port_scan", 1, 2.0)
    assert bans.offence(bytes([10, 0, 2, 2]), "sqli", 1, 2.0, proven=True)


def test_replay_is_deterministic() -> None:
    def run() -> list[dict]:
        h = Harness()
        conn = Conn(src=CLIENT)
        h.feed(*[ping(seq=i) for i in range(60)], *conn.handshake(),
               conn.send(http_get("/?q=%3Cscript%3E")))
        return h.sink.records

    assert run() == run()


def test_eve_alert_shape(harness) -> None:
    harness.feed(*[tcp(flags="FPU", sport=999, dport=22 + p) for p in range(6)])
    alert = harness.alerts()[0]
    assert alert["src_ip"] == "10.77.0.30" and alert["dest_port"] == 27 and alert["proto"] == "TCP"
    assert set(alert["alert"]) >= {"action", "signature_id", "signature", "category", "severity"}
    ban = next(r for r in harness.sink.records if r["event_type"] == "ban")
    assert ban["ban"]["detector"] == "xmas_scan" and ban["ban"]["duration"] == 300
