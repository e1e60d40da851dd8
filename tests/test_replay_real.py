"""Replay of real captures from ../shared/corpus that exercise the link types and
file shapes of sources/: our IP packets are compared with tcpdump's reading of the
same file, and `ips-inline replay` is run on the odd ones (NFLOG with a bad attribute
length, gzip, a capture cut mid-record)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ips_inline.sources.pcap import read_packets

REPO = Path(__file__).resolve().parent.parent
TRACES = REPO.parent / "shared" / "corpus" / "zeek-traces"
needs_corpus = pytest.mark.skipif(not TRACES.is_dir(), reason=f"no corpus at {TRACES}")
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="no tcpdump")
_SRC = re.compile(r" IP (\d+\.\d+\.\d+\.\d+)[.:\s]| IP6 ([0-9a-f:]+)[.\s]")


def tcpdump_sources(path: Path) -> list[str | None]:
    """The source address tcpdump prints for each frame (None: not IP to it)."""
    out = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    found = []
    for line in out.splitlines():
        if line[:1].isspace():
            continue  # a hex or detail line of the frame above
        m = _SRC.search(line)
        found.append(m.group(1) or m.group(2) if m else None)
    return found


def our_sources(path: Path) -> list[str | None]:
    found: list[str | None] = []
    for _ts, l3 in read_packets(str(path)):
        if not l3:
            found.append(None)
        else:
            src = l3[12:16] if l3[0] >> 4 == 4 else l3[8:24]
            found.append(str(ipaddress.ip_address(src)))
    return found


@needs_corpus
@needs_tcpdump
@pytest.mark.parametrize("name", [
    "nflog-http.pcap",  # NFLOG (239)
    "ppp/quic-interop-retry.pcap",  # PPP (9) without address and control bytes
    "quic/interop/quic-go_quic-go/handshake.pcap",  # PPP
    "dns-inverse-query.pcap", "llc.pcap",  # FDDI (10), IP in LLC/SNAP
    "pppoe.pcap",  # PPPoE discovery, LCP, then IP in sessions
    "mpls-in-vlan.pcap", "mixed-vlan-mpls.pcap",  # MPLS label stacks, in VLANs too
    "snap-tcp.pcap",  # 802.3 length frames with LLC/SNAP
    "q-in-q.pcap",
    "linux_dlt_sll2.pcap", "tls/irc-starttls.pcap",  # Linux cooked v2 and v1
    "pcapng-multi-interface.pcapng",  # two interfaces, nanosecond and microsecond clocks
])
def test_ip_packets_are_the_ones_tcpdump_reads(name):
    path = TRACES / name
    ours = our_sources(path)
    assert any(ours), f"{name}: no IP packet read"
    assert ours == tcpdump_sources(path)


@needs_corpus
@pytest.mark.parametrize("name, frames", [
    ("vntag.pcap", 3), ("pbb.pcap", 10), ("pppoe-over-qinq.pcap", 86),
])
def test_framings_tcpdump_does_not_decode(name, frames):
    """VN-Tag, PBB, PPPoE in QinQ: every IP frame of these captures reaches IP."""
    sources = our_sources(TRACES / name)
    assert sum(s is not None for s in sources) == frames


@needs_corpus
@needs_tcpdump
def test_gzip_captures_read_like_their_decompressed_copy(tmp_path):
    for name in ("echo-connections.pcap.gz", "portmapper-many-unanswered-calls.pcapng.gz"):
        plain = tmp_path / name.removesuffix(".gz")
        plain.write_bytes(gzip.decompress((TRACES / name).read_bytes()))
        ours = our_sources(TRACES / name)
        assert ours and ours == tcpdump_sources(plain)


def replay(*paths: Path) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "ips_inline.cli", "replay", *map(str, paths)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    stats = {}
    if proc.returncode == 0:
        stats = json.loads(proc.stdout.splitlines()[-1])["stats"]
    return proc.returncode, stats, proc.stderr


@needs_corpus
def test_replay_nflog_ppp_fddi_and_gzip():
    names = ["nflog-http.pcap", "ppp/quic-interop-retry.pcap", "dns-inverse-query.pcap",
             "echo-connections.pcap.gz"]
    rc, stats, err = replay(*(TRACES / n for n in names))
    assert rc == 0, err
    want = sum(1 for n in names for _ts, l3 in read_packets(str(TRACES / n)) if l3)
    assert stats["packets"] == want and stats["malformed"] == 0
    assert stats["capture_cut"] == {"files": 0, "bytes": 0}


@needs_corpus
def test_replay_nflog_bad_attribute_length_is_one_malformed_packet():
    rc, stats, err = replay(TRACES / "nflog-bad-tlv-len.pcap")
    assert rc == 0, err
    assert stats["packets"] == 1 and stats["malformed"] == 1 and stats["exceptions"] == 0


@needs_corpus
@pytest.mark.parametrize("name", ["nflog-http.pcap", "http/putty-upload.pcap"])
def test_replay_of_a_capture_cut_mid_record(tmp_path, name):
    """tcpdump killed mid-write: a warning line, every record before it, exit 0."""
    data = (TRACES / name).read_bytes()
    cut = tmp_path / Path(name).name
    cut.write_bytes(data[:-7])
    rc, stats, err = replay(cut)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ips-inline: warning: ")
    assert "ends inside a record" in lines[0]
    assert stats["capture_cut"]["files"] == 1 and stats["capture_cut"]["bytes"] > 0
    whole = sum(1 for _ts, l3 in read_packets(str(TRACES / name)) if l3)
    assert stats["packets"] == whole - 1


@needs_corpus
@pytest.mark.parametrize("name, linktype", [("radiotap.pcap", 127), ("wlanmon.pcap", 105),
                                            ("ieee80211.15.4.pcap", 230)])
def test_replay_refuses_link_types_that_are_not_ip_in_one_line(name, linktype):
    rc, _stats, err = replay(TRACES / name)
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert err.startswith(f"ips-inline: {TRACES / name}: unsupported link type {linktype}")


@needs_corpus
def test_replay_refuses_a_file_that_is_not_a_capture():
    rc, _stats, err = replay(TRACES / "README")
    assert rc == 2 and err.strip() == f"ips-inline: {TRACES / 'README'}: not a pcap or pcapng file"
