"""Each detector on crafted packets: fires on the attack, stays quiet on the
benign look-alike."""

from __future__ import annotations

import pytest
from packets import ATTACKER6, CLIENT, VICTIM6, Conn, http_get, http_post, ping, tcp, udp

from ips_inline.config import Config


def test_icmp_flood_over_threshold(harness) -> None:
    verdicts = harness.feed(*[ping(seq=i) for i in range(80)], step=0.005)
    assert verdicts[:50] == [True] * 50 and not verdicts[51]
    assert harness.banned() == {"10.77.0.30": "icmp_flood"}


def test_ping_once_a_second_is_fine(harness) -> None:
    assert all(harness.feed(*[ping(src=CLIENT, seq=i) for i in range(30)], step=1.0))
    assert not harness.alerts()


def test_icmpv6_flood(harness) -> None:
    harness.feed(*[ping(src=ATTACKER6, dst=VICTIM6, seq=i) for i in range(80)], step=0.005)
    assert harness.banned() == {"fd77::30": "icmp_flood"}


def test_syn_flood_rate(make_harness) -> None:
    cfg = Config()
    cfg.detectors["syn_flood"].half_open_threshold = 0  # only the rate check
    harness = make_harness(cfg)
    verdicts = harness.feed(*[tcp(sport=1024 + i) for i in range(150)], step=0.002)
    assert verdicts.index(False) == 100
    assert harness.banned() == {"10.77.0.30": "syn_flood"}
    assert harness.alerts("syn_flood")[0]["alert"]["signature_id"] == 1000002


def test_half_open_connections(harness) -> None:
    # 20 SYN/s stays under the rate threshold; 70 never-completed handshakes do not.
    harness.feed(*[tcp(sport=1024 + i) for i in range(70)], step=0.05)
    assert harness.banned() == {"10.77.0.30": "syn_flood"}
    assert harness.alerts("syn_flood")[0]["alert"]["signature_id"] == 1000003


def test_completed_handshakes_are_not_half_open(harness) -> None:
    for i in range(100):
        assert all(harness.feed(*Conn(src=CLIENT, sport=2000 + i).handshake(), step=0.05))
    assert not harness.alerts()


def test_port_scan_tcp_and_udp(make_harness) -> None:
    h = make_harness()
    h.feed(*[tcp(sport=5555, dport=p) for p in range(1, 40)], step=0.01)
    assert h.banned() == {"10.77.0.30": "port_scan"}
    h = make_harness()
    h.feed(*[udp(dport=p) for p in range(100, 140)], step=0.01)
    assert h.banned() == {"10.77.0.30": "port_scan"}


def test_replies_of_the_hosts_resolver_are_not_a_scan(harness) -> None:
    """The host queries its resolver from 60 ports; the answers come back to
    60 ports: replies (conntrack REPLY), never probes."""
    resolver = "10.77.0.53"
    for p in range(60):
        query = udp(src="10.77.0.10", dst=resolver, sport=33000 + p, dport=53)
        answer = udp(src=resolver, dst="10.77.0.10", sport=53, dport=33000 + p)
        assert all(harness.feed(query, answer, step=0.01))
    assert not harness.alerts() and not harness.banned()


def test_unsolicited_datagrams_from_port_53_are_a_scan(harness) -> None:
    """A scanner sending from source port 53 (nmap --source-port) is no reply."""
    harness.feed(*[udp(sport=53, dport=33000 + p) for p in range(60)], step=0.01)
    assert harness.banned() == {"10.77.0.30": "port_scan"}


@pytest.mark.parametrize(("flags", "detector"), [("", "null_scan"), ("F", "fin_scan"),
                                                  ("FPU", "xmas_scan")])
def test_stealth_scans_ban_after_several_ports(harness, flags: str, detector: str) -> None:
    # One probe: dropped (the kernel finds it INVALID) but no evidence of a scan.
    assert harness.feed(tcp(flags=flags, dport=22)) == [False]
    assert not harness.banned() and not harness.alerts()
    assert harness.feed(*[tcp(flags=flags, dport=p) for p in range(23, 28)]) == [False] * 5
    assert harness.banned() == {"10.77.0.30": detector}


@pytest.mark.parametrize("flags", ["", "F", "FPU"])
def test_stealth_probes_to_one_port_never_ban(harness, flags: str) -> None:
    assert harness.feed(*[tcp(flags=flags, sport=1000 + i, dport=443) for i in range(50)])
    assert not harness.banned()


def test_fin_ack_on_a_connection_is_normal(harness) -> None:
    conn = Conn(src=CLIENT)
    packets = [*conn.handshake(), conn.send(http_get("/")),
               tcp(CLIENT, sport=40000, flags="FA", seq=conn.seq, ack=1)]
    assert all(harness.feed(*packets))


ATTACKS = {
    "sqli": ["/item?id=1%27%20OR%20%271%27%3D%271",
             "/item?id=1 UNION SELECT user,pass FROM users--",
             "/item?id=1%2527%2520or%25201%253D1--"],
    "xss": ["/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "/search?q=<img src=x onerror=alert(1)>",
            "/search?q=javascript:alert(document.cookie)"],
    "path_traversal": ["/../../etc/passwd", "/files?f=..%2f..%2f..%2fetc%2fpasswd",
                       "/files?f=..%252f..%252fwindows%252fwin.ini",
                       "/files?f=%c0%ae%c0%ae/etc/hosts"],
    "cmd_injection": ["/ping?host=127.0.0.1;cat%20/etc/shadow", "/ping?host=x|id",
                      "/ping?host=$(whoami)", "/ping?host=%60uname%20-a%60"],
}


@pytest.mark.parametrize(("detector", "target"),
                         [(d, t) for d, targets in ATTACKS.items() for t in targets])
def test_payload_attack_in_query(harness, detector: str, target: str) -> None:
    conn = Conn()
    verdicts = harness.feed(*conn.handshake(), conn.send(http_get(target)))
    assert verdicts == [True, True, True, False]
    assert harness.alert_detectors() == [detector]


def test_sqli_in_post_body_and_cookie(harness) -> None:
    conn = Conn()
    login = http_post("/login", "user=admin'--&pw=x")
    assert not harness.feed(*conn.handshake(), conn.send(login))[-1]
    conn = Conn(sport=40001)
    cookie = "Cookie: session=abc; id=1' or '1'='1\r\n"
    assert not harness.feed(*conn.handshake(), conn.send(http_get("/", cookie)))[-1]
    assert harness.alert_detectors() == ["sqli", "sqli"]


def test_shellshock_header(harness) -> None:
    conn = Conn()
    ua = "User-Agent: () { :; }; /bin/bash -c 'id'\r\n"
    assert not harness.feed(*conn.handshake(), conn.send(http_get("/cgi-bin/status", ua)))[-1]
    assert harness.alert_detectors() == ["cmd_injection"]


BENIGN = ["/search?q=O%27Brien", "/search?q=union+station", "/search?q=select+the+best+option",
          "/search?q=cats+%26+dogs", "/docs/readme.txt", "/search?q=%3Cb%3Ebold%3C%2Fb%3E+text",
          "/search?q=what+is+1%2B1", "/a?email=o.brien%40example.com&page=2",
          "/search?q=rock+and+roll", "/api/items?filter=active&sort=name",
          "/list?style=compact&page=3"]


@pytest.mark.parametrize("target", BENIGN)
def test_benign_look_alikes_stay_clean(harness, target: str) -> None:
    conn = Conn(src=CLIENT)
    ua = "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    assert all(harness.feed(*conn.handshake(), conn.send(http_get(target, ua))))
    assert not harness.alerts()


def test_attack_split_across_segments(harness) -> None:
    conn = Conn()
    request = http_get("/item?id=1%27%20OR%20%271%27%3D%271")
    chunks = [request[i:i + 7] for i in range(0, len(request), 7)]
    verdicts = harness.feed(*conn.handshake(), *[conn.send(c) for c in chunks])
    assert all(verdicts[:-1]) and verdicts[-1] is False  # the completing segment is dropped
    assert harness.alerts("sqli")


def test_out_of_order_and_retransmitted_segments(harness) -> None:
    conn = Conn()
    request = http_get("/item?id=1%27%20OR%20%271%27%3D%271")
    first, second = request[:20], request[20:]
    hs = conn.handshake()
    seg1 = conn.send(first)
    seg2 = conn.send(second)
    verdicts = harness.feed(*hs, seg2, seg1, seg1)
    assert verdicts[4] is False and len(harness.alerts("sqli")) == 1


def test_http_on_any_port(harness) -> None:
    conn = Conn(dport=8081)
    assert not harness.feed(*conn.handshake(), conn.send(http_get("/?id=1%27%20or%201=1--")))[-1]


def test_blocked_connection_stays_blocked(harness) -> None:
    conn = Conn()
    harness.feed(*conn.handshake(), conn.send(http_get("/x?id=1%27%20or%201=1--")))
    assert harness.feed(conn.send(b"more data")) == [False]


def test_payload_ban_after_three_offences(harness) -> None:
    for i in range(3):
        conn = Conn(sport=41000 + i)
        harness.feed(*conn.handshake(), conn.send(http_get("/x?id=1%27%20or%201=1--")))
        assert bool(harness.banned()) == (i == 2)


def test_spoofable_payload_without_handshake_never_bans(harness) -> None:
    for i in range(5):
        pkt = tcp(sport=42000 + i, flags="PA", seq=9, ack=1,
                  payload=http_get("/x?id=1%27%20or%201=1--"))
        assert harness.feed(pkt) == [False]
    assert not harness.banned()


def test_response_direction_is_not_inspected(harness) -> None:
    conn = Conn(src=CLIENT)
    harness.feed(*conn.handshake())
    body = b"HTTP/1.1 200 OK\r\n\r\n<script>var q='SELECT * FROM t WHERE 1=1'</script>"
    reply = tcp("10.77.0.10", CLIENT, 80, 40000, "PA", 1, conn.seq, body)
    assert harness.feed(reply) == [True]
    assert not harness.alerts()


def test_disabled_detector_never_fires() -> None:
    from conftest import Harness

    cfg = Config()
    cfg.detectors["null_scan"].enabled = False
    cfg.engine.invalid_policy = "accept"  # else dropped as INVALID all the same
    h = Harness(cfg)
    assert h.feed(*[tcp(flags="", dport=p) for p in range(20)]) == [True] * 20
    assert not h.alerts()


def test_sqli_prefilter_only_skips_bare_tokens() -> None:
    from ips_inline.detectors.http_attacks import _plain

    assert _plain("widget") and _plain("/search") and _plain("bench/1.0") and _plain("a-b_c.d")
    for value in ("1--", "1/*x*/", "1 or 1=1", "admin'", "1;drop", "x)", 'a"b', "1#"):
        assert not _plain(value), value


def test_tcp_dispatch_by_flags_never_hides_a_detection() -> None:
    """The engine routes a segment only to detectors whose fires_on() admits
    its flags: for every flag byte, a detector that fires (thresholds at 0,
    so one packet is enough) must be admitted."""
    from ips_inline.detectors import Context, build
    from ips_inline.packet.decode import decode
    from ips_inline.packet.flows import FlowTable

    cfg = Config()
    for det_cfg in cfg.detectors.values():
        det_cfg.threshold = 0
    fired: dict[str, set[int]] = {}
    for flags in range(256):
        ctx = Context(cfg.engine, FlowTable(64, 60, 10), {})
        pkt = decode(tcp(flags=flags, dport=1000 + flags))
        for det in build(cfg, ctx):
            if not det.payload and 6 in det.protocols and det.inspect(pkt, None, 1.0):
                assert det.fires_on(flags & 0x3F), (det.name, flags)
                fired.setdefault(det.name, set()).add(flags & 0x3F)
    assert set(fired) == {"syn_flood", "port_scan", "null_scan", "fin_scan", "xmas_scan"}


def test_established_segments_meet_no_flood_or_scan_detector(harness) -> None:
    tcp_dispatch = harness.engine._tcp
    assert [d.name for d in tcp_dispatch[0x02]] == ["syn_flood", "port_scan"]
    assert all(not tcp_dispatch[flags] for flags in (0x10, 0x18, 0x11, 0x14))
