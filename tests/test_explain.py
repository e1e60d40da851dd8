"""`ips-inline explain IP`: on replayed attack captures, on hand-made logs and
state files, and on bad input. (On the live lab: tests/test_e2e.py.)"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from conftest import Harness
from packets import ATTACKER, Conn, http_get, tcp

from ips_inline.cli import main
from ips_inline.config import Config
from ips_inline.enforce.store import BanStore
from ips_inline.eve import JsonLines
from ips_inline.explain import MAX_ALERTS, explain, render
from ips_inline.replay import replay

REPO = Path(__file__).resolve().parent.parent
BANNING = sorted(p for p in (REPO / "pcaps").glob("*.pcap*")
                 if json.loads(p.with_name(p.name.split(".")[0] + ".expected.json")
                               .read_text())["bans"])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ips_inline.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def write_log(path: Path, records: list[dict]) -> Path:
    with path.open("w") as fh:
        sink = JsonLines(fh)
        for record in records:
            sink.emit(record)
    return path


def sqli(h: Harness, sport: int, src: str = ATTACKER) -> None:
    conn = Conn(src=src, sport=sport)
    h.feed(*conn.handshake(), conn.send(http_get(f"/?id={sport}%27%20OR%20%271%27%3D%271")))


# -- replayed attack captures ---------------------------------------------------------------
@pytest.mark.parametrize("capture", BANNING, ids=lambda p: p.name)
def test_every_ban_of_a_replayed_attack_is_explained(capture: Path, tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    with eve.open("w") as fh:
        replay([str(capture)], Config(), fh, None)
    expected = json.loads(capture.with_name(capture.name.split(".")[0] + ".expected.json")
                          .read_text())["bans"]
    for ip, detector in expected.items():
        out = explain(ip, [str(eve)], None, None)
        assert out["seen"] and out["banned"] and out["as_of_source"] == "end of the EVE log"
        ban = out["bans"][-1]
        assert (ban["detector"], ban["origin"], ban["count"]) == (detector, "local", 1)
        assert out["ban_ends"] == ban["ends"]
        assert ban["alerts"], f"{ip}: no alert led to its ban"
        assert {a["detector"] for a in ban["alerts"]} == {detector}
        last = ban["alerts"][-1]
        assert last["offence"] == last["ban_after"] == len(ban["alerts"])
        assert "request" in last or "dest_port" in last or "icmp_type" in last
        assert f"ban #1 at {ban['time']}: {detector}" in "\n".join(render(out))


def test_the_command_on_a_replay(tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    assert cli("replay", str(REPO / "pcaps" / "xss.pcap"), "--eve", str(eve)).returncode == 0
    res = cli("explain", "10.77.0.30", "--eve", str(eve), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["bans"][0]["detector"] == "xss"
    res = cli("explain", "10.77.0.30", "--eve", str(eve))
    assert res.returncode == 0 and res.stdout.startswith("10.77.0.30: banned until ")
    assert "xss (origin local), 5 min (300 s)" in res.stdout


def test_a_replayed_sqli_shows_each_request_line(tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    with eve.open("w") as fh:
        replay([str(REPO / "pcaps" / "sqli_get.pcap")], Config(), fh, None)
    out = explain("10.77.0.30", [str(eve)], None, None)
    requests = [a["request"] for a in out["bans"][0]["alerts"]]
    assert requests[0] == "GET /products?id=1%27%20OR%20%271%27%3D%271 HTTP/1.1"
    assert len(requests) == 3 and all(r.startswith("GET /products?id=") for r in requests)
    assert {a["host"] for a in out["bans"][0]["alerts"]} == {"www.ips.test"}


def test_a_replayed_scan_shows_the_ports_probed(tmp_path: Path) -> None:
    eve = tmp_path / "eve.json"
    with eve.open("w") as fh:
        replay([str(REPO / "pcaps" / "scan_syn.pcap")], Config(), fh, None)
    alert = explain("10.77.0.30", [str(eve)], None, None)["bans"][0]["alerts"][0]
    assert len(alert["ports"]) == 21 and alert["dest_port"] in alert["ports"]


# -- hand-made histories -------------------------------------------------------------------
def test_escalation_expiry_and_pending_offences(tmp_path: Path) -> None:
    h = Harness()
    for sport in (40001, 40002, 40003):
        sqli(h, sport)
    h.engine.sweep(h.now + 301)  # the first ban expires
    h.now += 400
    for sport in (40004, 40005, 40006):
        sqli(h, sport)
    h.now += 1000  # the second ban (600 s) runs out...
    sqli(h, 40007)  # ...and one offence comes after it
    h.feed(tcp(src="10.77.0.99", flags="FPU"))  # someone else, last in the log
    out = explain(ATTACKER, [str(write_log(tmp_path / "eve.json", h.sink.records))], None, None)
    first, second = out["bans"]
    assert (first["count"], first["duration"], first["ended"]["reason"]) == (1, 300, "expired")
    assert (second["count"], second["duration"], second["ended"]["reason"]) == (2, 600, "expired")
    assert [a["offence"] for a in second["alerts"]] == [1, 2, 3]
    assert not out["banned"]
    assert [(g["detector"], [a["offence"] for a in g["alerts"]]) for g in out["pending"]] == \
        [("sqli", [1])]


def test_alerts_that_count_toward_no_ban_are_set_apart(tmp_path: Path) -> None:
    cfg = Config()
    cfg.detectors["xss"].mode = "alert"
    h = Harness(cfg)
    conn = Conn()
    h.feed(*conn.handshake(), conn.send(http_get("/?q=%3Cscript%3Ealert(1)%3C/script%3E")))
    out = explain(ATTACKER, [str(write_log(tmp_path / "eve.json", h.sink.records))], None, None)
    assert out["bans"] == [] and out["pending"] == []
    assert out["other_alerts"]["count"] == 1
    assert out["other_alerts"]["latest"][0]["action"] == "allowed"


def test_a_state_file_ban_without_eve_records(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`ips-inline ban` writes only the state file; the CrowdSec work adds an
    `origin` to entries."""
    eve = write_log(tmp_path / "eve.json", [{"timestamp": "2026-01-01T00:00:00.000000+0000",
                                             "event_type": "stats", "stats": {}}])
    store = BanStore(str(tmp_path / "state.json"))
    store.record_ban("10.0.0.5", 2_000_000_000.0, "manual", 1)
    store.update(lambda e: e.__setitem__("10.0.0.6", {"expires": 2_000_000_000.0,
                                                      "detector": "crowdsec", "count": 1,
                                                      "origin": "crowdsec"}))
    assert main(["explain", "10.0.0.5", "--eve", str(eve), "--state",
                 str(tmp_path / "state.json")]) == 0
    text = capsys.readouterr().out
    assert "banned until 2033-05-18T03:33:20.000000+0000" in text and "origin manual" in text
    out = explain("10.0.0.6", [str(eve)], str(tmp_path / "state.json"), 1_900_000_000.0)
    assert out["banned"] and out["state"]["origin"] == "crowdsec"
    assert out["as_of_source"] == "clock"


def test_rotated_and_compressed_logs_read_in_order(tmp_path: Path) -> None:
    h = Harness()
    for sport in (40001, 40002, 40003):
        sqli(h, sport)
    records = h.sink.records
    old = tmp_path / "eve.json.1.gz"
    with gzip.open(old, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records[:2])
    new = write_log(tmp_path / "eve.json", records[2:])
    out = explain(ATTACKER, [str(old), str(new)], None, None)
    assert [a["offence"] for a in out["bans"][0]["alerts"]] == [1, 2, 3]


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    h = Harness()
    for sport in (40001, 40002, 40003):
        sqli(h, sport)
    path = write_log(tmp_path / "eve.json", h.sink.records)
    with path.open("a") as fh:
        line = json.dumps(h.sink.records[0])
        fh.write(line[:len(line) // 2])  # no newline: the daemon died mid-line
    out = explain(ATTACKER, [str(path)], None, None)
    assert out["bans"][0]["detector"] == "sqli" and out["banned"]
    assert out["as_of"] == h.sink.records[-1]["timestamp"]
    assert out["unreadable_records"] == 1


def test_the_earlier_record_shape_still_reads(tmp_path: Path) -> None:
    old = [{"timestamp": "2026-11-27T14:59:05.103561+0000", "event_type": "alert",
            "src_ip": "10.77.11.37", "src_port": 41234, "dest_ip": "10.77.11.10", "dest_port": 80,
            "proto": "TCP", "detector": "sqli",
            "alert": {"action": "blocked", "gid": 1, "signature_id": 1000010, "rev": 1,
                      "signature": "SQL injection in HTTP request",
                      "category": "Web Application Attack", "severity": 1}},
           {"timestamp": "2026-11-27T14:59:11.224010+0000", "event_type": "ban",
            "src_ip": "10.77.11.37", "detector": "sqli", "duration": 300, "count": 1},
           {"timestamp": "2026-11-27T15:04:11.301122+0000", "event_type": "unban",
            "src_ip": "10.77.11.37", "reason": "expired"}]
    out = explain("10.77.11.37", [str(write_log(tmp_path / "eve.json", old))], None, None)
    ban = out["bans"][0]
    assert (ban["detector"], ban["duration"], ban["ended"]["reason"]) == ("sqli", 300, "expired")
    assert ban["alerts"][0]["dest_port"] == 80


def test_a_huge_log_is_streamed_and_the_output_bounded(tmp_path: Path) -> None:
    h = Harness()
    h.cfg.detectors["sqli"].ban_after = 10_000
    for sport in range(300):
        sqli(h, 20000 + sport)
    mine = [json.dumps(r) for r in reversed(h.sink.records)]  # popped from the end
    noise = json.dumps({**h.sink.records[0], "src_ip": "10.77.0.31"})
    path = tmp_path / "eve.json"
    with path.open("w") as fh:
        for n in range(40_000):
            fh.write(noise + "\n")
            if n % 100 == 0 and mine:
                fh.write(mine.pop() + "\n")
    assert not mine and path.stat().st_size > 25 << 20
    tracemalloc.start()
    out = explain(ATTACKER, [str(path)], None, None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes"
    assert len(out["pending"][0]["alerts"]) == MAX_ALERTS


# -- never seen, bad input ------------------------------------------------------------------
def test_never_seen_says_so_and_exits_0(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    h = Harness()
    sqli(h, 40001)
    eve = write_log(tmp_path / "eve.json", h.sink.records)
    assert main(["explain", "192.0.2.77", "--eve", str(eve)]) == 0
    assert capsys.readouterr().out.startswith("192.0.2.77: never seen")
    assert main(["explain", "192.0.2.77", "--eve", str(eve), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seen"] is False


@pytest.mark.parametrize("kind", ["missing", "text", "binary", "directory", "bad_gzip",
                                  "bad_state", "bad_state_entry", "bad_ip"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, kind: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    h = Harness()
    sqli(h, 40001)
    eve = write_log(tmp_path / "eve.json", h.sink.records)
    args = [ATTACKER, "--eve", str(eve)]
    if kind == "missing":
        args[2] = str(tmp_path / "nope.json")
    elif kind == "text":
        (tmp_path / "notes.txt").write_text(f"{ATTACKER} was here\n")
        args[2] = str(tmp_path / "notes.txt")
    elif kind == "binary":
        (tmp_path / "blob").write_bytes(bytes(range(256)) * 10)
        args[2] = str(tmp_path / "blob")
    elif kind == "directory":
        args[2] = str(tmp_path)
    elif kind == "bad_gzip":
        (tmp_path / "eve.json.gz").write_bytes(b"not gzip at all")
        args[2] = str(tmp_path / "eve.json.gz")
    elif kind == "bad_state":
        (tmp_path / "state.json").write_text("{broken")
        args += ["--state", str(tmp_path / "state.json")]
    elif kind == "bad_state_entry":
        (tmp_path / "state.json").write_text(json.dumps(
            {"version": 1, "bans": {ATTACKER: {"expires": "soon", "count": []}}}))
        args += ["--state", str(tmp_path / "state.json")]
    elif kind == "bad_ip":
        args[0] = "10.77.0.300"
    assert main(["explain", *args]) == 2  # in-process: an uncaught error fails the test
    err = capsys.readouterr().err
    assert err.startswith("ips-inline: ") and len(err.strip().splitlines()) == 1, err
