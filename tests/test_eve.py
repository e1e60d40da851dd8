"""EVE records in Suricata's shape: built by ips_inline/eve.py, checked against
Suricata's own schema (../shared/suricata-eve-schema-7.0.17.json, see
tests/eve_schema.py for what counts as valid) and the communityid library."""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path

import communityid
import pytest
from conftest import Harness
from eve_schema import check_records, expected_community_id, schema_errors
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import ATTACKER, VICTIM, Conn, http_get, http_post, ping, tcp, udp
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6

from ips_inline.bans import BanManager, RecordingEnforcer, Whitelist
from ips_inline.config import Config, ConfigError, from_dict
from ips_inline.detectors.port_scan import EVIDENCE_PORTS
from ips_inline.engine import DROP, Engine
from ips_inline.eve import (
    AlertBudget,
    Collect,
    JsonLines,
    detector_of,
    printable,
    suppressed_record,
    unban_record,
)
from ips_inline.flowid import community_id, flow_id
from ips_inline.packet.decode import decode
from ips_inline.replay import replay

REPO = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (REPO / "pcaps").glob("*.pcap*"))



def xmas_scan(src: str = ATTACKER, flags: str = "FPU") -> list[bytes]:
    """A stealth scan of 6 ports: one more than the default threshold."""
    return [tcp(src=src, flags=flags, dport=22 + p) for p in range(6)]

def sqli_conn(h: Harness, sport: int, target: str = "/?id=1' OR '1'='1") -> list[bool]:
    conn = Conn(sport=sport)
    return h.feed(*conn.handshake(), conn.send(http_get(target.replace(" ", "%20"))))


# -- Suricata's schema -----------------------------------------------------------------------
def test_the_schema_rejects_the_old_shape_and_other_timestamps() -> None:
    """The check can fail: the pre-change alert (top-level detector) and
    timestamps in another ISO form are refused by Suricata's schema."""
    h = Harness()
    h.feed(*xmas_scan())
    alert = h.alerts()[0]
    assert schema_errors(alert) == []
    assert schema_errors({**alert, "detector": "xmas_scan"})
    for stamp in ("2026-12-01T18:42:27.123456Z", "2026-12-01T18:42:27.123456+00:00"):
        assert schema_errors({**alert, "timestamp": stamp})
    assert schema_errors({**alert, "alert": {**alert["alert"], "detector": "x"}})
    meta = {**alert["alert"], "metadata": {"detector": "xmas_scan"}}  # not a list
    assert schema_errors({**alert, "alert": meta})


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_replayed_record_is_valid(capture: Path) -> None:
    out = io.StringIO()
    replay([str(capture)], Config(), out, None)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[-1]["event_type"] == "stats"
    errors = check_records(records)
    assert not errors, "\n".join(errors[:20])
    for alert in (r for r in records if r["event_type"] == "alert"):
        assert {"flow_id", "community_id", "pkt_src"} <= set(alert), alert
        assert detector_of(alert) in alert["alert"]["metadata"]["detector"]


def test_the_replayed_captures_cover_every_kind_of_record() -> None:
    """The per-capture check above is not vacuous: HTTP alerts, ICMP and
    IPv6 alerts, bans with the alert's connection, all occur."""
    seen: set[str] = set()
    for capture in CAPTURES:
        out = io.StringIO()
        replay([str(capture)], Config(), out, None)
        for r in map(json.loads, out.getvalue().splitlines()):
            seen.add(r["event_type"])
            if r.get("app_proto") == "http":
                seen.add("http")
            if r["event_type"] == "alert":
                seen.add(r["proto"])
                seen.add("ipv6" if ":" in r["src_ip"] else "ipv4")
            if r["event_type"] == "ban" and "flow_id" in r:
                seen.add("ban with flow")
    assert {"alert", "ban", "stats", "http", "TCP", "ICMP", "IPv6-ICMP", "UDP", "ipv6", "ipv4",
            "ban with flow"} <= seen, seen


def test_unban_and_suppressed_records_are_valid() -> None:
    assert not schema_errors(unban_record(bytes([10, 0, 0, 1]), "expired", 1.5))
    assert not schema_errors(suppressed_record(800, 1.5))
    out = Collect()
    budget = AlertBudget(out, 1, clock=lambda: 5.0)
    h = Harness()
    h.feed(*xmas_scan(), *xmas_scan(src="10.77.0.31"))
    for record in h.alerts():
        budget.emit(record)
    budget.clock = lambda: 6.5
    budget.tick()
    assert [r["event_type"] for r in out.records] == ["alert", "alert_suppressed"]
    assert check_records(out.records) == []


# -- the alert's contents --------------------------------------------------------------------
def test_http_alert_names_what_was_attacked() -> None:
    h = Harness()
    conn = Conn(sport=41000)
    head = ("GET /search?q=1'%20OR%20'1'='1 HTTP/1.1\r\nHost: Shop.Example:8080\r\n"
            "User-Agent: sqlmap/1.7\r\nCookie: s=\x01\x7f\r\n\r\n")
    assert h.feed(*conn.handshake(), conn.send(head.encode("latin-1")))[-1] is False
    alert = h.alerts()[0]
    assert alert["app_proto"] == "http"
    assert alert["http"] == {"hostname": "shop.example", "http_port": 8080,
                             "url": "/search?q=1'%20OR%20'1'='1", "http_user_agent": "sqlmap/1.7",
                             "http_method": "GET", "protocol": "HTTP/1.1", "length": 0}
    assert alert["payload_printable"] == head[:-4].replace("\x01", ".").replace("\x7f", ".")
    assert alert["alert"]["metadata"] == {"detector": ["sqli"], "offences": ["1"],
                                          "ban_after": ["3"]}


@pytest.mark.parametrize(("host", "target", "hostname", "port"), [
    ("[fd77::10]:81", "/?q=x", "fd77::10", 81),
    ("victim", "http://Other.Example:9090/?q=x", "other.example", 9090),
    ("victim:99999", "/?q=x", "victim", None),
])
def test_hostname_as_a_server_takes_it(host: str, target: str, hostname: str,
                                       port: int | None) -> None:
    h = Harness()
    conn = Conn()
    target += "%27%20OR%20%271%27%3D%271"
    h.feed(*conn.handshake(), conn.send(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))
    http = h.alerts()[0]["http"]
    assert http["hostname"] == hostname and http.get("http_port") == port


def test_post_body_is_in_the_payload_and_the_payload_is_bounded() -> None:
    cfg = from_dict({"eve": {"payload_max": 120}})
    h = Harness(cfg)
    conn = Conn()
    h.feed(*conn.handshake(), conn.send(http_post("/login", "user=admin'--&pw=" + "x" * 500)))
    payload = h.alerts()[0]["payload_printable"]
    assert payload.startswith("POST /login HTTP/1.1\r\n") and len(payload) == 120
    small = Harness(from_dict({"eve": {"payload_max": 2000}}))
    conn = Conn()
    small.feed(*conn.handshake(), conn.send(http_post("/login", "user=admin'--&pw=x")))
    assert small.alerts()[0]["payload_printable"].endswith("\r\n\r\nuser=admin'--&pw=x")


def test_payload_off_for_privacy() -> None:
    h = Harness(from_dict({"eve": {"payload": False}}))
    sqli_conn(h, 40000)
    alert = h.alerts()[0]
    assert "payload_printable" not in alert and alert["http"]["url"]
    with pytest.raises(ConfigError, match="eve.payload_max"):
        from_dict({"eve": {"payload_max": 0}})


def test_printable_is_suricatas() -> None:
    assert printable(bytes(range(256))) == (
        "." * 10 + "\n" + ".." + "\r" + "." * 18 + "".join(map(chr, range(32, 127))) + "." * 129)


def test_allowed_alerts_count_no_offence_and_claim_no_response_length() -> None:
    cfg = Config()
    cfg.detectors["sqli"].mode = "alert"
    h = Harness(cfg)
    sqli_conn(h, 40000)
    alert = h.alerts()[0]
    assert alert["alert"]["action"] == "allowed"
    assert alert["alert"]["metadata"] == {"detector": ["sqli"]}
    assert "length" not in alert["http"]


def test_offences_count_up_to_the_ban() -> None:
    h = Harness()
    for n in range(3):
        sqli_conn(h, 40000 + n)
    meta = [a["alert"]["metadata"] for a in h.alerts()]
    assert [m["offences"] for m in meta] == [["1"], ["2"], ["3"]]
    assert all(m["ban_after"] == ["3"] for m in meta)
    assert h.banned() == {ATTACKER: "sqli"}


def test_a_port_scan_alert_lists_the_ports_probed() -> None:
    cfg = Config()
    cfg.detectors["port_scan"].threshold = 200
    cfg.detectors["syn_flood"].enabled = False
    h = Harness(cfg)
    h.feed(*[tcp(sport=50000, dport=port) for port in range(1, 202)])
    ports = h.alerts("port_scan")[0]["alert"]["metadata"]["ports"]
    assert ports == [str(p) for p in range(1, EVIDENCE_PORTS + 1)]


def test_icmp_alerts_carry_type_and_code_not_ports() -> None:
    h = Harness()
    h.feed(*[ping(seq=i) for i in range(60)])
    alert = h.alerts("icmp_flood")[0]
    assert (alert["icmp_type"], alert["icmp_code"]) == (8, 0)
    assert "src_port" not in alert and "dest_port" not in alert
    assert alert["community_id"] == expected_community_id(alert)


def test_decoder_reads_the_icmp_code() -> None:
    v4 = decode(bytes(IP(src=ATTACKER, dst=VICTIM) / ICMP(type=3, code=13)))
    v6 = decode(bytes(IPv6(src="fd77::30", dst="fd77::10") / ICMPv6DestUnreach(code=4)))
    assert (v4.icmp_type, v4.icmp_code, v6.icmp_type, v6.icmp_code) == (3, 13, 1, 4)
    assert decode(udp()).icmp_code == -1


def test_in_iface_is_asked_only_for_alerts() -> None:
    h = Harness()
    asked = []
    h.engine.get_iface = lambda: asked.append(1) or "eth0"
    h.feed(*[ping(seq=i) for i in range(40)], udp(), tcp(flags="S"))
    assert asked == [] and not h.alerts()
    h.feed(*xmas_scan())
    assert asked == [1] and h.alerts()[0]["in_iface"] == "eth0"
    assert schema_errors(h.alerts()[0]) == []


# -- flow_id and community_id ----------------------------------------------------------------
def test_flow_id_groups_one_connection_and_its_ban() -> None:
    cfg = Config()
    cfg.detectors["sqli"].ban_after = 2
    h = Harness(cfg)
    conn = Conn(sport=40000)
    h.feed(*conn.handshake(), conn.send(http_get("/?a=1%27%20OR%20%271%27%3D%271")))
    first = h.alerts()[0]
    again = Conn(sport=40000)  # the same 5-tuple, a new connection later on
    again.seq = conn.seq + 100_000
    h.now += 400.0  # past flow_ttl: the first connection is forgotten
    h.feed(*again.handshake(), again.send(http_get("/?b=1%27%20OR%20%271%27%3D%271")))
    second = h.alerts()[1]
    ban = next(r for r in h.sink.records if r["event_type"] == "ban")
    assert second["flow_id"] != first["flow_id"]
    assert ban["flow_id"] == second["flow_id"] and ban["community_id"] == second["community_id"]
    assert first["community_id"] == second["community_id"]  # a hash of the 5-tuple alone
    assert (ban["src_port"], ban["dest_port"], ban["ban"]["detector"]) == (40000, 80, "sqli")


def test_flow_id_is_the_same_both_ways_and_fits_51_bits() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    assert flow_id(6, a, b, 1234, 80, 5.0) == flow_id(6, b, a, 80, 1234, 5.0)
    assert flow_id(6, a, b, 1234, 80, 5.0) != flow_id(6, a, b, 1234, 80, 6.0)
    assert flow_id(1, a, b, 8, 0) == flow_id(1, b, a, 0, 0)  # echo request and its reply
    ids = {flow_id(17, a, b, port, 53) for port in range(2000)}
    assert len(ids) == 2000 and max(ids) < 1 << 51
    assert flow_id(6, a, b, 1, 2, float("nan")) >= 0  # whatever a capture's clock says


_ADDR4 = st.binary(min_size=4, max_size=4)
_ADDR6 = st.binary(min_size=16, max_size=16)
_PORT = st.integers(0, 65535)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(_ADDR4, _ADDR4), st.tuples(_ADDR6, _ADDR6)),
       st.sampled_from([1, 6, 17, 58]), _PORT, _PORT, st.integers(0, 255), st.integers(0, 255))
def test_community_id_equals_the_librarys(addrs: tuple[bytes, bytes], proto: int, sport: int,
                                          dport: int, itype: int, icode: int) -> None:
    src, dst = addrs
    if proto == 1 and len(src) == 16:
        proto = 58
    if proto == 58 and len(src) == 4:
        proto = 1
    if proto in (1, 58):
        sport, dport = itype, icode
    tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
    assert community_id(proto, src, dst, sport, dport) == communityid.CommunityID().calc(tpl)


def test_community_id_of_the_spec_example() -> None:
    # The spec's baseline TCP example: 128.232.110.120:34855 -> 66.35.250.204:80
    tpl = communityid.FlowTuple.make_tcp("128.232.110.120", "66.35.250.204", 34855, 80)
    src, dst = bytes([128, 232, 110, 120]), bytes([66, 35, 250, 204])
    assert community_id(6, src, dst, 34855, 80) == communityid.CommunityID().calc(tpl) == \
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


# -- the other records -----------------------------------------------------------------------
def test_ban_and_unban_records() -> None:
    h = Harness()
    h.feed(*xmas_scan())
    h.engine.bans.sweep(h.now + 301)
    kinds = {r["event_type"]: r for r in h.sink.records}
    assert kinds["ban"]["ban"] == {"detector": "xmas_scan", "duration": 300, "count": 1,
                                   "origin": "local"}
    assert kinds["unban"] == {"timestamp": kinds["unban"]["timestamp"], "event_type": "unban",
                              "src_ip": ATTACKER, "unban": {"reason": "expired"}}
    assert check_records(h.sink.records) == []


def test_detector_of_reads_both_shapes() -> None:
    assert detector_of({"event_type": "alert", "alert": {"metadata": {"detector": ["sqli"]}}}) \
        == "sqli"
    assert detector_of({"event_type": "ban", "ban": {"detector": "port_scan"}}) == "port_scan"
    assert detector_of({"event_type": "alert", "detector": "xss", "alert": {}}) == "xss"
    assert detector_of({"event_type": "ban", "detector": "syn_flood"}) == "syn_flood"
    assert detector_of({"event_type": "alert", "alert": {"metadata": "junk"}}) is None


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_never_lets_an_attack_through() -> None:
    """The EVE write failing (disk full, log on a dead mount) once raised out of
    the engine: the packet got error_policy's accept and the offence was never
    counted. The record is lost and counted; the verdict and the ban stand."""
    cfg = Config()
    enforcer = RecordingEnforcer()
    sink = JsonLines(FullDisk())
    engine = Engine(cfg, BanManager(cfg.bans, Whitelist([]), enforcer), sink)
    verdicts = [engine.process(p, 1_700_000_000.0 + i) for i, p in enumerate(xmas_scan())]
    assert verdicts == [DROP] * 6
    assert [det for _ip, _d, det in enforcer.bans] == ["xmas_scan"]
    assert engine.stats.exceptions == 0
    assert sink.failed == 2  # the alert and the ban record


def test_alerts_past_the_budget_are_not_even_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spoofed flood alerts on every packet; past the log's budget the
    record (timestamps, hashes, formatting) would be built for nothing."""
    import ips_inline.engine as engine_module

    built = []
    real = engine_module.alert_record
    monkeypatch.setattr(engine_module, "alert_record", lambda *a, **k: built.append(1) or
                        real(*a, **k))
    out = Collect()
    clock = [100.0]
    cfg = Config()
    sink = AlertBudget(out, 5, clock=lambda: clock[0])
    engine = Engine(cfg, BanManager(cfg.bans, Whitelist([]), RecordingEnforcer()), sink)
    for i in range(50):  # 50 sources, each a FIN scan of 6 ports
        for n, pkt in enumerate(xmas_scan(src=f"10.9.0.{i + 1}", flags="F")):
            engine.process(pkt, 100.0 + i / 1000 + n / 1e5)
    assert len(built) == 5 and engine.stats.alerts["fin_scan"] == 50
    clock[0] += 1.0
    sink.tick()
    assert out.records[-1]["alert_suppressed"] == {"count": 45}


def test_interface_names_for_in_iface() -> None:
    import socket

    from ips_inline.eve import InterfaceNames

    index, name = socket.if_nameindex()[0]
    names = InterfaceNames(limit=1)
    assert names.name(index) == name and names.name(index) == name
    assert names.name(0) is None and names.name(2**31 - 1) is None and names.name(2**40) is None


def test_a_replay_writes_the_same_bytes_every_time() -> None:
    """flow_id hashes capture times, never the clock: replays stay reproducible."""
    def run() -> str:
        out = io.StringIO()
        replay([str(REPO / "pcaps" / "sqli_post.pcap"), str(REPO / "pcaps" / "scan_syn.pcap")],
               Config(), out, None)
        return out.getvalue()

    first = run()
    assert '"flow_id":' in first and first == run()
