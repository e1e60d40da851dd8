"""Differential test: Suricata 7 (Debian's, installed by scripts/setup.sh) and
ips-inline read the same rules and the same requests, and must alert the
same sids on each request. The requests are every shipped rule's attack and
benign look-alike, plus one per keyword of tests/rules/differential.rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from rules_views import Pkt, Req, http_hits, ip, req
from test_rules_default import CASES

from ips_inline.rules import DEFAULT_RULES, Variables, load

DIFF_RULES = Path(__file__).parent / "rules" / "differential.rules"
SURICATA = shutil.which("suricata")
pytestmark = pytest.mark.skipif(SURICATA is None, reason="suricata is not installed")

KEYWORD_REQUESTS = [
    req("/a%20b/c"), req("/x/../etc/passwd"), req("/put", "PUT"),
    req("/dup", headers=[("Host", "h"), ("X-Dup", "1"), ("X-Dup", "2")]),
    req("/", Cookie="sid=42"), req("/", headers=[("Host", "h"), ("X-Order", "1")]),
    req("/", headers=[("Host", "h"), ("User-Agent", "first"), ("User-Agent", "second")]),
    req("/", headers=[("Host", "mixed.example:8080")]),
    req("/", headers=[("Host", "MiXeD.example:8080")]), req("/rl"),
    Req(method="GET", target="/", version="HTTP/1.0", headers=[("Host", "h")]),
    req("/b", "POST", body=b"needle=1"), req("/dw/abx"), req("/dw/ax"),
    req("/neg/good"), req("/neg/bad"), req("/p?id=1234"), req("/p?id=12345"),
    req("/isd/abc"), req("/isd/ab"), req("/short"), req("/leg", ua="legacy-agent"),
    req("/noref"), req("/noref", Referer="y"), req("/pcre/index.PHP"), req("/bt/aaxab"),
    req("/bs"), req("/j", "POST", Content_Type="application/json", body=b"{}"), req("/st"),
    req("/q?q=%27x%27"), req("/file.bak"), req("/file.bak?x"),
]


# Where ips-inline follows Suricata's documentation and Suricata 7.0.10 does not:
# with a port, a Host header keeps its capitals in http.host there ("The
# http.host buffer is normalized to be all lower case"); a lowercase rule must
# not be evaded by capitals, so ips-inline lowercases.
KNOWN_DIVERGENCES = {("GET / HTTP/1.1", "MiXeD.example:8080"): ([9000010, 9000011], [9000011])}


def _requests() -> list[Req]:
    out = [r for sid in sorted(CASES) for r in CASES[sid]]
    return out + KEYWORD_REQUESTS


def _source(i: int) -> str:
    return f"10.{(i >> 8) & 255}.{i & 255}.2"


def _wire(r: Req) -> bytes:
    head = r.request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.headers) + "\r\n"
    return head.encode("latin-1") + r.body


def _write_pcap(path: Path, requests: list[Req]) -> None:
    from scapy.all import IP, TCP, Ether, wrpcap

    server, frames, t = "192.168.1.10", [], 1_700_000_000.0
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for i, r in enumerate(requests):
        client, sport, data = _source(i), 10000 + i, _wire(r)
        up, down = IP(src=client, dst=server), IP(src=server, dst=client)
        c, s = 1001, 5001
        for p in (up / TCP(sport=sport, dport=80, flags="S", seq=c - 1),
                  down / TCP(sport=80, dport=sport, flags="SA", seq=s - 1, ack=c),
                  up / TCP(sport=sport, dport=80, flags="A", seq=c, ack=s),
                  up / TCP(sport=sport, dport=80, flags="PA", seq=c, ack=s) / data,
                  down / TCP(sport=80, dport=sport, flags="PA", seq=s, ack=c + len(data)) / reply,
                  up / TCP(sport=sport, dport=80, flags="FA", seq=c + len(data),
                           ack=s + len(reply)),
                  down / TCP(sport=80, dport=sport, flags="FA", seq=s + len(reply),
                             ack=c + len(data) + 1),
                  up / TCP(sport=sport, dport=80, flags="A", seq=c + len(data) + 1,
                           ack=s + len(reply) + 1)):
            frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
            frame.time = t
            t += 0.001
            frames.append(frame)
    wrpcap(str(path), frames)


@pytest.fixture(scope="module")
def suricata_alerts(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, set[int]], str]:
    tmp = tmp_path_factory.mktemp("suricata")
    rules = tmp / "all.rules"
    rules.write_text(DEFAULT_RULES.read_text() + DIFF_RULES.read_text())
    _write_pcap(tmp / "cases.pcap", _requests())
    res = subprocess.run([SURICATA, "-r", str(tmp / "cases.pcap"), "-S", str(rules), "-l", str(tmp),
                          "-k", "none", "-c", "/etc/suricata/suricata.yaml"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    alerts: dict[str, set[int]] = {}
    for line in (tmp / "eve.json").read_text().splitlines():
        event = json.loads(line)
        if event.get("event_type") == "alert":
            alerts.setdefault(event["src_ip"], set()).add(event["alert"]["signature_id"])
    return alerts, res.stdout + res.stderr


def test_suricata_loads_every_rule(suricata_alerts: tuple[dict[str, set[int]], str]) -> None:
    _, log = suricata_alerts
    errors = [line for line in log.splitlines() if line.startswith("E:")]
    assert errors == []


def test_same_alerts_as_suricata(suricata_alerts: tuple[dict[str, set[int]], str]) -> None:
    alerts, _ = suricata_alerts
    ours = load([str(DIFF_RULES)], True, Variables.build())
    diffs = []
    for i, r in enumerate(_requests()):
        pkt = Pkt(src=ip(_source(i)), dst=ip("192.168.1.10"), sport=10000 + i)
        mine = {h.sid for h in http_hits(ours, r, pkt)}
        theirs = alerts.get(_source(i), set())
        if mine != theirs:
            host = dict(r.headers).get("Host", "")
            diffs.append(((r.request_line, host), (sorted(mine), sorted(theirs))))
    assert dict(diffs) == KNOWN_DIVERGENCES
    assert sum(1 for s in alerts.values() if s) >= len(CASES) + 20  # the test saw alerts
