"""Smoke test of `make bench-adversarial` at its smallest size: every family
runs and the table has its shape. No time is asserted (timings belong in the
benchmark's output, not in tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_adversarial.py"
sys.path.insert(0, str(SCRIPT.parent))

import bench_adversarial  # noqa: E402

ROW = re.compile(r"^(?P<family>.{30}) +(?P<kb>\d+\.\d) +(?P<packets>\d+) +"
                 r"(?P<total>\d+\.\d\d ms|>\d+ s) +(?P<per_kb>\d+ us|-) +(?P<growth>\d+\.\d\dx|-)"
                 r"  (?P<outcome>\S.*)$")


def test_every_family_gets_a_row_at_1_kb() -> None:
    cp = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "1", "--repeat", "1"],
                        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert cp.returncode == 0, cp.stderr[-2000:]
    lines = cp.stdout.splitlines()
    assert lines[0].startswith("engine time per KB of request")
    assert lines[1].split() == ["family", "KB", "packets", "total", "per", "KB", "vs", "1", "KB",
                                "outcome"]
    rows = [ROW.match(line) for line in lines[2:-1]]
    assert all(rows), lines
    assert [r["family"].rstrip() for r in rows] == [f.name for f in bench_adversarial.FAMILIES]
    for r in rows:
        assert r["kb"] == "1.0" and int(r["packets"]) >= 4
        assert r["growth"] == "1.00x" or r["total"].startswith(">")
    assert lines[-1].startswith("vs 1 KB =")


def test_each_family_is_one_whole_connection() -> None:
    """SYN first, FIN|ACK last, and the bytes in between carry the request."""
    for family in bench_adversarial.FAMILIES:
        packets = family.packets(2048)
        first, last = packets[0], packets[-1]
        for pkt, flags in ((first, 0x02), (last, 0x11)):
            l4 = pkt[40:] if pkt[0] >> 4 == 6 else pkt[(pkt[0] & 15) * 4:]
            assert l4[13] == flags, family.name


def test_a_family_past_its_cap_says_so() -> None:
    slow = bench_adversarial.Family("slow", lambda n: bench_adversarial.one_byte(
        bench_adversarial.benign(n)))
    results = bench_adversarial.measure(slow, [16, 64], cap=0.01, repeat=1)
    assert [r.seconds for r in results] == [None, None]
    assert results[0].outcome.startswith("stopped at") and results[1].outcome == "not run"
    assert ">0.01 s" in bench_adversarial.table([results], 0.01)
