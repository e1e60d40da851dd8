"""The capture container reader (sources/capfile.py, sources/pcap.py): pcap and pcapng
shapes, cut-short files, gzip, and the one-line errors. Files are written here, byte
by byte, so each test shows the shape it reads."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import tcp

from ips_inline.sources.capfile import MAX_RECORD
from ips_inline.sources.linklayer import stripper
from ips_inline.sources.pcap import Capture, PcapError, UnsupportedLinkType, read_packets

PKT = tcp(flags="S")
ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"


def pcap(records: list[tuple[int, int, bytes]], linktype: int = 1, order: str = "<",
         nano: bool = False, wirelen: int | None = None) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, frame in records:
        out += struct.pack(order + "IIII", sec, frac, len(frame), wirelen or len(frame)) + frame
    return out


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def idb(linktype: int, order: str = "<", tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
        opts += struct.pack(order + "HH", 0, 0)
    return block(1, struct.pack(order + "HHI", linktype, 0, 0) + opts, order)


def epb(ifid: int, ticks: int, frame: bytes, order: str = "<",
        wirelen: int | None = None) -> bytes:
    head = struct.pack(order + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                       wirelen or len(frame))
    return block(6, head + frame, order)


def write(tmp_path: Path, data: bytes, name: str = "c.pcap") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def read_all(path: str) -> tuple[list[tuple[float, bytes | None]], int | None]:
    with Capture(path) as cap:
        pkts = list(cap)
    return pkts, cap.cut


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, order, nano):
    frac = 500_000_000 if nano else 500_000
    pkts, cut = read_all(write(tmp_path, pcap([(100, frac, ETH + PKT)], order=order,
                                              nano=nano)))
    assert pkts == [(100.5, PKT)] and cut is None


def test_pcap_snap_length_records_pass_as_they_are(tmp_path):
    snapped = (ETH + PKT)[:30]
    pkts, cut = read_all(write(tmp_path, pcap([(1, 0, snapped)], wirelen=1500)))
    assert pkts == [(1.0, snapped[14:])] and cut is None


@pytest.mark.parametrize("keep", [3, 16, 16 + 20])  # in the record header, in its data
def test_pcap_cut_inside_the_last_record(tmp_path, keep):
    whole = pcap([(1, 0, ETH + PKT), (2, 0, ETH + PKT)])
    last = 16 + len(ETH + PKT)
    pkts, cut = read_all(write(tmp_path, whole[:len(whole) - last + keep]))
    assert pkts == [(1.0, PKT)]
    assert cut == keep


def test_pcap_record_bigger_than_any_snap_length_is_damage(tmp_path):
    data = pcap([]) + struct.pack("<IIII", 1, 0, MAX_RECORD + 1, MAX_RECORD + 1)
    with pytest.raises(PcapError, match="damaged capture"):
        read_all(write(tmp_path, data))


def test_pcapng_interfaces_keep_their_own_link_type_and_clock(tmp_path):
    """dpkt applies the first interface's link type and resolution to all packets."""
    data = (shb() + idb(1, tsresol=9) + idb(101) + epb(0, 3_000_000_000, ETH + PKT)
            + block(5, b"\0" * 8)  # an interface statistics block: skipped
            + epb(1, 4_000_000, PKT))
    pkts, cut = read_all(write(tmp_path, data, "c.pcapng"))
    assert pkts == [(3.0, PKT), (4.0, PKT)] and cut is None


def test_pcapng_sections_may_change_byte_order(tmp_path):
    data = (shb("<") + idb(1) + epb(0, 1_000_000, ETH + PKT)
            + shb(">") + idb(101, ">") + epb(0, 2_000_000, PKT, ">"))
    pkts, _cut = read_all(write(tmp_path, data, "c.pcapng"))
    assert pkts == [(1.0, PKT), (2.0, PKT)]


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path):
    spb = block(3, struct.pack("<I", len(PKT)) + PKT)
    old = block(2, struct.pack("<HHIIII", 0, 0, 0, 5_000_000, len(PKT), len(PKT)) + PKT)
    pkts, _cut = read_all(write(tmp_path, shb() + idb(101) + spb + old, "c.pcapng"))
    assert pkts == [(0.0, PKT), (5.0, PKT)]


@pytest.mark.parametrize("keep", [5, 8, 30])
def test_pcapng_cut_inside_the_last_block(tmp_path, keep):
    data = shb() + idb(101) + epb(0, 1_000_000, PKT)
    pkts, cut = read_all(write(tmp_path, data + epb(0, 2_000_000, PKT)[:keep], "c.pcapng"))
    assert pkts == [(1.0, PKT)] and cut == keep


def test_pcapng_packet_on_an_undefined_interface_is_damage(tmp_path):
    with pytest.raises(PcapError, match="undefined interface 3"):
        read_all(write(tmp_path, shb() + idb(1) + epb(3, 0, PKT), "c.pcapng"))


def test_pcapng_block_lengths_that_disagree_are_damage(tmp_path):
    bad = bytearray(epb(0, 0, PKT))
    bad[-4:] = struct.pack("<I", len(bad) + 4)
    with pytest.raises(PcapError, match="disagree"):
        read_all(write(tmp_path, shb() + idb(101) + bytes(bad), "c.pcapng"))


def test_gzip_is_read_by_its_magic(tmp_path):
    data = gzip.compress(pcap([(1, 0, ETH + PKT), (2, 0, ETH + PKT)]))
    for name in ("c.pcap.gz", "c.pcapng.gz", "c.pcap"):
        pkts, cut = read_all(write(tmp_path, data, name))
        assert pkts == [(1.0, PKT), (2.0, PKT)] and cut is None


def test_gzip_stream_cut_short_is_a_cut_capture(tmp_path):
    many = pcap([(n, 0, ETH + PKT + bytes(range(200))) for n in range(1, 400)])
    data = gzip.compress(many)
    pkts, cut = read_all(write(tmp_path, data[:len(data) // 2], "c.pcap.gz"))
    assert 0 < len(pkts) < 399
    assert cut is not None
    assert [ts for ts, _l3 in pkts] == [float(n) for n in range(1, len(pkts) + 1)]


def test_gzip_is_decompressed_as_a_stream(tmp_path, monkeypatch):
    """A large capture must not be inflated into memory at once."""
    reads: list[int] = []
    orig = gzip.GzipFile.read

    def spy(self, size=-1):
        reads.append(size)
        return orig(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", spy)
    data = gzip.compress(pcap([(n, 0, ETH + PKT) for n in range(1, 200)]))
    assert len(list(read_packets(write(tmp_path, data, "c.pcap.gz")))) == 199
    assert reads and all(0 <= n <= MAX_RECORD for n in reads)


@pytest.mark.parametrize("data, message", [
    (b"", "not a pcap or pcapng file"),
    (b"# README\nnot a capture\n", "not a pcap or pcapng file"),
    (pcap([])[:10], "header cut short"),
    (gzip.compress(b"plain text, compressed"), "not a pcap or pcapng file"),
    (b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic", "unreadable"),
])
def test_files_that_are_not_captures_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(PcapError, match=message) as info:
        Capture(write(tmp_path, data))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(PcapError, match="cannot open"):
        Capture(str(tmp_path / "nope.pcap"))


@pytest.mark.parametrize("linktype, name", [(127, "radiotap"), (105, "802.11"),
                                            (195, "802.15.4"), (4242, "")])
def test_unsupported_link_types_are_refused_before_any_packet(tmp_path, linktype, name):
    with pytest.raises(UnsupportedLinkType, match=f"unsupported link type {linktype}") as e:
        Capture(write(tmp_path, pcap([(1, 0, b"\0" * 40)], linktype=linktype)))
    assert name in str(e.value) and e.value.linktype == linktype


def test_pcapng_unsupported_interface_refused_at_its_first_packet(tmp_path):
    data = shb() + idb(1) + idb(127) + epb(0, 1_000_000, ETH + PKT) + epb(1, 0, b"\0" * 40)
    with Capture(write(tmp_path, data, "c.pcapng")) as cap:
        it = iter(cap)
        assert next(it) == (1.0, PKT)
        with pytest.raises(UnsupportedLinkType, match="127"):
            next(it)


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=600), linktype=st.sampled_from([1, 9, 10, 104, 113, 239, 276]),
       ng=st.booleans())
def test_damaged_files_end_in_one_line_errors_or_a_cut_never_a_crash(tmp_path_factory, tail,
                                                                      linktype, ng):
    head = shb() + idb(linktype) if ng else pcap([], linktype=linktype)
    path = write(tmp_path_factory.mktemp("fuzz"), head + tail)
    try:
        with Capture(path) as cap:
            for _ts, l3 in cap:
                assert l3 is None or isinstance(l3, bytes)
    except PcapError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=500, deadline=None)
@given(frame=st.binary(max_size=200), linktype=st.sampled_from(
    [0, 1, 9, 10, 12, 50, 51, 101, 104, 108, 113, 239, 276]), little=st.booleans())
def test_link_layers_never_raise(frame, linktype, little):
    strip = stripper(linktype, little)
    assert strip is not None
    out = strip(frame, len(frame))
    assert out is None or isinstance(out, bytes)
