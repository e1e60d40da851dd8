"""The real-capture regression suite (scripts/corpus.py): the whole corpus against
tests/corpus_expected.toml, and the runner's rules on small corpora made here."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from packets import ATTACKER, CLIENT, Conn, http_get, ping

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
EXPECTED = REPO / "tests" / "corpus_expected.toml"
SCRIPT = REPO / "scripts" / "corpus.py"

_spec = importlib.util.spec_from_file_location("corpus_runner", SCRIPT)
corpus = importlib.util.module_from_spec(_spec)
sys.modules["corpus_runner"] = corpus  # dataclasses look their module up by name
_spec.loader.exec_module(corpus)


def test_real_corpus_matches_the_reviewed_expectations():
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}: the real-capture suite did not run")
    report = corpus.run(CORPUS, corpus.load_expectations(EXPECTED))
    print(corpus.summary(report))
    assert report.ok, corpus.summary(report) + "\n" + "\n".join(report.problems)


def write_pcap(path: Path, packets: list[bytes], linktype: int = 101, step: float = 0.001,
               start: float = 1_700_000_000.0) -> None:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for n, pkt in enumerate(packets):
        ts = start + n * step
        out += struct.pack("<IIII", int(ts), round(ts % 1 * 1e6), len(pkt), len(pkt)) + pkt
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A corpus: a clean capture, a ping flood, a SQL injection, an 802.11 file and
    files that are not captures."""
    root = tmp_path / "corpus"
    conn = Conn(src=CLIENT)
    write_pcap(root / "set" / "clean.pcap", [*conn.handshake(), conn.send(http_get("/"))])
    write_pcap(root / "set" / "flood.pcap", [ping(seq=n) for n in range(80)])
    attacker = Conn(src=ATTACKER)
    write_pcap(root / "sqli.pcap", [*attacker.handshake(),
                                    attacker.send(http_get("/?id=1'+OR+'1'='1"))])
    write_pcap(root / "wifi.pcap", [b"\0" * 40], linktype=127)
    (root / "README").write_text("what these captures are\n")
    (root / "set" / "clean.pcap.py").write_text("# generator\n")
    return root


def expectations(tmp_path: Path, text: str) -> object:
    path = tmp_path / "expected.toml"
    path.write_text(text)
    return corpus.load_expectations(path)


GOOD = """
[non_ip_link_types]
127 = "802.11 radiotap"
[expect."set/flood.pcap"]
reason = "80 echo requests in 80 ms"
alerts = { icmp_flood = 1 }
bans = ["10.77.0.30"]
[expect."sqli.pcap"]
reason = "a tautology in id"
alerts = { sqli = 1 }
"""


def test_a_corpus_as_reviewed_passes(small, tmp_path):
    report = corpus.run(small, expectations(tmp_path, GOOD))
    assert report.ok, report.problems
    assert [r.name for r in report.results] == ["set/clean.pcap", "set/flood.pcap",
                                                "sqli.pcap", "wifi.pcap"]
    line = corpus.summary(report)
    assert "3 captures read" in line and "1 refused (link type 127: 1)" in line
    assert "2 alerting" in line and "0 exceptions" in line and "0 pending" in line


def test_an_unreviewed_alert_and_a_missing_one_differ(small, tmp_path):
    text = GOOD.replace('[expect."sqli.pcap"]', '[expect."set/clean.pcap"]')
    problems = corpus.run(small, expectations(tmp_path, text)).problems
    assert any(p.startswith("sqli.pcap: alerts {'sqli': 1}") for p in problems)
    assert any(p.startswith("sqli.pcap: ") and "dropped" in p for p in problems)
    assert "set/clean.pcap: 0 sqli alerts, expected at least 1" in problems


def test_refusal_is_allowed_only_for_listed_link_types(small, tmp_path):
    text = GOOD.replace('127 = "802.11 radiotap"', "")
    problems = corpus.run(small, expectations(tmp_path, text)).problems
    assert problems == [f"wifi.pcap: refused: {small / 'wifi.pcap'}: unsupported link type "
                        "127 (802.11 radiotap)"]


def test_pending_entries_are_allowed_to_differ_and_must(small, tmp_path):
    text = GOOD.replace('[expect."sqli.pcap"]', '[pending."sqli.pcap"]').replace(
        'alerts = { sqli = 1 }', 'today = "sqli"')
    report = corpus.run(small, expectations(tmp_path, text))
    assert report.ok and report.pending_left == 1
    stale = text + '[pending."set/clean.pcap"]\nreason = "fixed already"\n'
    problems = corpus.run(small, expectations(tmp_path, stale)).problems
    assert problems == ["set/clean.pcap: pending, but no longer differs: remove its "
                        "[pending] entry"]


def test_expect_and_pending_together(small, tmp_path):
    """The truth in [expect], today's gap in [pending]: stale once the truth holds."""
    text = GOOD + '[pending."set/flood.pcap"]\nreason = "r"\n'
    problems = corpus.run(small, expectations(tmp_path, text)).problems
    assert problems == ["set/flood.pcap: pending, but no longer differs: remove its "
                        "[pending] entry"]
    wrong = text.replace("icmp_flood = 1", "icmp_flood = 1, port_scan = 1")
    assert corpus.run(small, expectations(tmp_path, wrong)).ok


def test_entries_for_captures_not_in_the_corpus_differ(small, tmp_path):
    text = GOOD + '[expect."gone.pcap"]\nreason = "r"\nalerts = { sqli = 1 }\n'
    problems = corpus.run(small, expectations(tmp_path, text)).problems
    assert problems == ["gone.pcap: in the expectations file, not in the corpus"]


def test_time_budget(small, tmp_path):
    text = "[budget]\nseconds = 0.0\nseconds_per_mb = 0.0\n" + GOOD
    problems = corpus.run(small, expectations(tmp_path, text)).problems
    assert len([p for p in problems if "budget 0.0 s" in p]) == 4


def test_engine_exceptions_and_crashes_differ(small, tmp_path, monkeypatch):
    import ips_inline.detectors as detectors
    from ips_inline.detectors.http_attacks import Sqli

    class BoomSqli:
        """sqli with a bug, as a Python class: a compiled class's methods
        cannot be monkeypatched, nor can a Python class derive from it."""

        name, protocols, payload, proof_required = Sqli.name, Sqli.protocols, True, True

        def __init__(self, cfg, ctx) -> None:
            self.cfg = cfg

        @staticmethod
        def fires_on(flags: int) -> bool:
            return True

        def inspect(self, pkt, flow, now):
            raise RuntimeError("detector bug")

        def evidence(self, pkt, now) -> dict[str, list[str]]:
            return {}

    monkeypatch.setattr(detectors, "ALL", tuple(BoomSqli if cls is Sqli else cls
                                                for cls in detectors.ALL))
    problems = corpus.run(small, expectations(tmp_path, GOOD)).problems
    assert any(p.startswith("set/clean.pcap: 1 engine exceptions (first: engine error")
               and "RuntimeError: detector bug" in p for p in problems)

    def crash(buf, wirelen):
        raise IndexError("reader bug")

    monkeypatch.setitem(corpus.Capture.__init__.__globals__, "stripper", lambda lt, le: crash)
    problems = corpus.run(small, expectations(tmp_path, GOOD)).problems
    assert "set/clean.pcap: crashed: IndexError: reader bug" in problems


def test_a_cut_capture_is_read_not_refused(small, tmp_path):
    data = (small / "sqli.pcap").read_bytes()
    (small / "sqli.pcap").write_bytes(data[:-5])  # the attack's record is the one cut
    problems = corpus.run(small, expectations(tmp_path, GOOD)).problems
    assert problems == ["sqli.pcap: 0 sqli alerts, expected at least 1"]


@pytest.mark.parametrize("text, message", [
    ('[expect."a.pcap"]\nalerts = { sqli = 1 }\n', "needs a one-line reason"),
    ('[expect."a.pcap"]\nreason = "r"\n', "neither alerts nor drops"),
    ('[expect."a.pcap"]\nreason = "r"\nalerts = { sqli = 0 }\n', "minimum count"),
    ('[expect."a.pcap"]\nreason = "r"\nalert = { sqli = 1 }\n', "unknown keys"),
    ('[pending."a.pcap"]\nreason = ""\n', "needs a one-line reason"),
    ("[non_ip_link_types]\nwifi = 1\n", "link type numbers"),
    ("[expected]\n", "unknown tables"),
    ("[budget\n", "expected"),
])
def test_a_wrong_expectations_file_is_a_one_line_error(tmp_path, text, message):
    with pytest.raises(corpus.ExpectationsError, match=message) as info:
        expectations(tmp_path, text)
    assert "\n" not in str(info.value)


def run_script(*args: str, ci: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_script_exit_status_and_summary(small, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    proc = run_script("--corpus", str(small), "--expected", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("corpus: 3 captures read, 1 refused")
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('[expect."sqli.pcap"]', '[expect."set/clean.pcap"]'))
    proc = run_script("--corpus", str(small), "--expected", str(bad), "--show")
    assert proc.returncode == 1
    assert "  DIFFERS sqli.pcap: alerts {'sqli': 1}" in proc.stdout
    assert "    sqli: 10.77.0.30:" in proc.stdout  # --show: each alert, for review


def test_script_without_a_corpus_says_so_and_fails_only_in_ci(tmp_path):
    missing = tmp_path / "nowhere"
    proc = run_script("--corpus", str(missing))
    assert proc.returncode == 0 and proc.stdout == f"corpus: no corpus at {missing}: skipped\n"
    assert run_script("--corpus", str(missing), ci="true").returncode == 1


def test_clean_capture_is_really_clean(small):
    """The fixture's clean capture: a client's GET after its handshake."""
    res = corpus.run_one(small / "set" / "clean.pcap", small, corpus.Config())
    assert res.clean and res.packets == res.accepted == 4 and res.refused is None
