"""Replay every capture in pcaps/ through the CLI and check it against its sidecar.

The captures and their NAME.expected.json sidecars are made by scripts/make_pcaps.py (its
docstring and pcaps/README.md describe the sidecar keys). Default config throughout.
"""

from __future__ import annotations

import filecmp
import ipaddress
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ips_inline.eve import detector_of

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
GENERATOR = REPO / "scripts" / "make_pcaps.py"
CAPTURES = sorted(p for p in PCAPS.glob("*.pcap*") if not p.name.endswith(".json"))
TIMEOUT = 300


def sidecar_of(capture: Path) -> Path:
    return capture.with_name(capture.name.split(".", 1)[0] + ".expected.json")


def ip(addr: str) -> str:
    return ipaddress.ip_address(addr).compressed


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ips_inline.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT)


def replay(capture: Path) -> list[dict]:
    proc = run_cli("replay", str(capture))
    assert proc.returncode == 0, f"replay {capture.name} exited {proc.returncode}:\n{proc.stderr}"
    records = []
    for n, line in enumerate(proc.stdout.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{capture.name}: stdout line {n} is not JSON ({exc}): {line[:200]}")
    assert records, f"{capture.name}: replay wrote nothing"
    assert records[-1].get("event_type") == "stats", f"last record is not stats: {records[-1]}"
    return records


def check(capture: Path, exp: dict, records: list[dict]) -> list[str]:
    """Every way the replay output differs from the sidecar, as readable lines."""
    errors: list[str] = []
    stats = records[-1]["stats"]
    alerts = [r for r in records if r.get("event_type") == "alert"]
    bans_rec = [r for r in records if r.get("event_type") == "ban"]

    # frames that are not IP (ARP, ...) never reach the engine: stats counts them apart
    records_seen = stats["packets"] + stats.get("non_ip", 0)
    if records_seen != exp["packets"]:
        errors.append(f"stats.packets {stats['packets']} + non_ip {stats.get('non_ip', 0)} "
                      f"!= {exp['packets']} records")
    if stats["accepted"] + stats["dropped"] != stats["packets"]:
        errors.append(f"accepted {stats['accepted']} + dropped {stats['dropped']} != "
                      f"packets {stats['packets']}")
    if not exp["dropped_min"] <= stats["dropped"] <= exp["dropped_max"]:
        errors.append(f"stats.dropped {stats['dropped']} not in "
                      f"[{exp['dropped_min']}, {exp['dropped_max']}]")
    if not exp["malformed_min"] <= stats["malformed"] <= exp["malformed_max"]:
        errors.append(f"stats.malformed {stats['malformed']} not in "
                      f"[{exp['malformed_min']}, {exp['malformed_max']}]")

    per_detector = Counter(detector_of(a) for a in alerts)
    for det, minimum in exp["alerts_min"].items():
        if per_detector[det] < minimum:
            errors.append(f"{per_detector[det]} {det} alert records, expected >= {minimum}")
    allowed = set(exp["alerts_allowed"])
    unexpected = {d: n for d, n in per_detector.items() if d not in allowed}
    if unexpected:
        errors.append(f"alerts from detectors not allowed here: {unexpected}")
    stats_alerts = {d: n for d, n in (stats.get("alerts") or {}).items() if n}
    if set(stats_alerts) - allowed:
        errors.append(f"stats.alerts has detectors not allowed here: {stats_alerts}")
    quiet = {ip(a) for a in exp["no_alerts_from"]}
    for a in alerts:
        if ip(a["src_ip"]) in quiet:
            errors.append(f"alert from {a['src_ip']} (must not alert): {json.dumps(a)}")
        if a.get("alert", {}).get("action") != "blocked":
            errors.append(f"alert action is not 'blocked' in block mode: {json.dumps(a)}")

    banned: dict[str, str] = {}
    for b in bans_rec:
        addr = ip(b["src_ip"])
        if addr in banned and banned[addr] != b["ban"]["detector"]:
            errors.append(f"{addr} banned twice: by {banned[addr]} and {b['ban']['detector']}")
        banned.setdefault(addr, b["ban"]["detector"])
    want = {ip(a): d for a, d in exp["bans"].items()}
    if banned != want:
        errors.append(f"ban records {banned} != expected {want}")
    stats_bans = {ip(a) for a in stats.get("bans", [])}
    if stats_bans != set(want):
        errors.append(f"stats.bans {sorted(stats_bans)} != expected {sorted(want)}")
    return errors


def test_captures_exist():
    assert CAPTURES, f"no captures in {PCAPS}; run scripts/make_pcaps.py"


def test_every_sidecar_has_a_capture():
    names = {p.name.split(".", 1)[0] for p in CAPTURES}
    orphans = [p.name for p in PCAPS.glob("*.expected.json")
               if p.name.removesuffix(".expected.json") not in names]
    assert not orphans, f"sidecars without a capture: {orphans}"


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_replay_matches_sidecar(capture: Path):
    side = sidecar_of(capture)
    assert side.exists(), f"{capture.name} has no sidecar {side.name}"
    exp = json.loads(side.read_text())
    records = replay(capture)
    errors = check(capture, exp, records)
    assert not errors, f"{capture.name} ({exp['description']}):\n  " + "\n  ".join(errors)


# -- the generator ---------------------------------------------------------------------------
def generate(out: Path) -> Path:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("gen") / "pcaps")


def same_tree(a: Path, b: Path, names: list[str]) -> list[str]:
    _, mismatch, missing = filecmp.cmpfiles(a, b, names, shallow=False)
    return mismatch + missing


def test_generator_is_deterministic(fresh: Path, tmp_path: Path):
    again = generate(tmp_path / "pcaps")
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert not same_tree(fresh, again, names), "two runs of make_pcaps.py differ"


def test_committed_pcaps_match_generator(fresh: Path):
    names = sorted(p.name for p in fresh.iterdir())
    committed = sorted(p.name for p in PCAPS.iterdir() if p.name != "README.md")
    assert committed == names, "pcaps/ holds other files than make_pcaps.py writes"
    differ = same_tree(fresh, PCAPS, names)
    assert not differ, f"stale in pcaps/ (re-run scripts/make_pcaps.py): {differ}"


def test_captures_are_small():
    big = [p.name for p in CAPTURES if p.stat().st_size >= 1_000_000]
    assert not big


# -- unusable input --------------------------------------------------------------------------
def not_a_capture(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pcap"
    if kind == "text":
        path.write_text("this is not a packet capture\n")
    elif kind == "empty":
        path.write_bytes(b"")
    return path  # "missing": never created


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_unreadable_capture_exits_2(tmp_path: Path, kind: str):
    path = not_a_capture(tmp_path, kind)
    proc = run_cli("replay", str(path))
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert err and "\n" not in err, f"expected one line on stderr, got: {proc.stderr!r}"
