"""Capture file containers: pcap (micro/nanosecond, either byte order) and pcapng
(any number of sections and interfaces), plain or gzip-compressed, read as a stream.

Written here rather than taken from dpkt because a replay of real captures needs
what dpkt's readers do not give: pcapng link type and timestamp resolution per
interface (dpkt applies the first interface's to every packet), a cut-short last
record reported as such instead of passed on as a short frame or an exception, and
record sizes bounded before anything is read (dpkt reads whatever a header claims).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS = {  # magic as read little-endian -> (byte order, units per second)
    0xA1B2C3D4: ("<", 1_000_000), 0xA1B23C4D: ("<", 1_000_000_000),
    0xD4C3B2A1: (">", 1_000_000), 0x4D3CB2A1: (">", 1_000_000_000),
}
_BOM = 0x1A2B3C4D
MAX_RECORD = 262_144  # libpcap's largest snapshot length: a bigger record is damage
_MAX_BLOCK = 16 << 20  # other pcapng blocks (name resolution, secrets) may be larger
_MAX_PACKET_BLOCK = MAX_RECORD + (1 << 16)  # a packet and its options (comments)
_SKIP_CHUNK = 1 << 16
_BT_IDB, _BT_PB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14


class CaptureError(Exception):
    """The file is not a capture, or is damaged before its end."""


class Cut(Exception):  # noqa: N818 - an event, not an error: the file just ends early
    """The file ends inside a record: `present` bytes of it are there (as far as
    known: a gzip stream cut short loses what its last read had decompressed)."""

    def __init__(self, present: int, compressed: bool = False) -> None:
        super().__init__(present)
        self.present = present
        self.compressed = compressed


@dataclass(frozen=True, slots=True)
class Record:
    ts: float
    linktype: int
    little: bool  # byte order of the file (NFLOG's attribute headers use it)
    frame: bytes
    wirelen: int  # length on the wire; more than len(frame) under a snap length


def is_capture(head: bytes) -> bool:
    """Whether the first 4 bytes of a (decompressed) file are a capture's magic."""
    return head == PCAPNG_MAGIC or (len(head) == 4 and
                                    struct.unpack("<I", head)[0] in _PCAP_MAGICS)


def open_stream(path: str) -> BinaryIO:
    """The file, decompressed on the fly when it is gzip (by its magic, not its name)."""
    fh = open(path, "rb")  # noqa: SIM115 - the caller closes it
    try:
        if fh.read(2) == GZIP_MAGIC:
            fh.seek(0)
            return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
        fh.seek(0)
        return fh
    except BaseException:
        fh.close()
        raise


def _read(fh: BinaryIO, n: int, already: int = 0) -> bytes:
    """n bytes, or fewer at the end of the file. `already`: bytes of the current
    record read before, for the Cut raised when a gzip stream ends early."""
    try:
        return fh.read(n)
    except EOFError:  # gzip member cut before its end marker, maybe between records
        raise Cut(already, compressed=True) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise CaptureError(f"unreadable ({exc})") from None


def _exact(fh: BinaryIO, n: int, already: int = 0) -> bytes:
    buf = _read(fh, n, already)
    if len(buf) < n:
        raise Cut(already + len(buf))
    return buf


class Reader:
    """The records of a capture stream. The file header is read at once: CaptureError
    if the stream is not a capture. Iterating yields every complete record, then
    raises Cut if the stream ends inside one, CaptureError if it is damaged."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        head = _read(fh, 4)
        if len(head) < 4 or not is_capture(head):
            raise CaptureError("not a pcap or pcapng file")
        self.linktype: int | None = None  # pcap: one for the file; pcapng: per interface
        if head == PCAPNG_MAGIC:
            try:
                order = _section(fh, _exact_header(fh, 4))
            except Cut:
                raise CaptureError("file header cut short") from None
            self._records = _pcapng(fh, order)
        else:
            self.linktype, self._records = _pcap(fh, head)

    def __iter__(self) -> Iterator[Record]:
        return self._records


def _exact_header(fh: BinaryIO, n: int) -> bytes:
    buf = _read(fh, n)
    if len(buf) < n:
        raise CaptureError("file header cut short")
    return buf


def _pcap(fh: BinaryIO, magic: bytes) -> tuple[int, Iterator[Record]]:
    order, units = _PCAP_MAGICS[struct.unpack("<I", magic)[0]]
    _vmaj, _vmin, _zone, _sig, _snap, network = struct.unpack(order + "HHiIII",
                                                             _exact_header(fh, 20))
    linktype = network & 0xFFFF  # the upper bits may describe an FCS
    return linktype, _pcap_records(fh, order, units, linktype)


def _pcap_records(fh: BinaryIO, order: str, units: int, linktype: int) -> Iterator[Record]:
    little = order == "<"
    hdr = struct.Struct(order + "IIII")
    while True:
        raw = _read(fh, 16)
        if not raw:
            return
        if len(raw) < 16:
            raise Cut(len(raw))
        sec, frac, caplen, wirelen = hdr.unpack(raw)
        if caplen > MAX_RECORD:
            raise CaptureError(f"a record claims {caplen} bytes (damaged file)")
        frame = _exact(fh, caplen, 16)
        yield Record(sec + frac / units, linktype, little, frame, max(wirelen, caplen))


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units: float
    offset: int


def _pcapng(fh: BinaryIO, order: str) -> Iterator[Record]:
    interfaces: list[_Interface] = []
    while True:
        raw = _read(fh, 8)
        if not raw:
            return
        if len(raw) < 8:
            raise Cut(len(raw))
        if raw[:4] == PCAPNG_MAGIC:  # a new section: its own byte order and interfaces
            order = _section(fh, raw[4:])
            interfaces = []
            continue
        btype, blen = struct.unpack(order + "II", raw)
        if blen < 12 or blen % 4:
            raise CaptureError(f"pcapng block of length {blen} (damaged file)")
        if btype not in (_BT_IDB, _BT_PB, _BT_SPB, _BT_EPB):
            _skip(fh, blen - 8, 8)
            continue
        if blen > (_MAX_BLOCK if btype == _BT_IDB else _MAX_PACKET_BLOCK):
            raise CaptureError(f"pcapng block of length {blen} (damaged file)")
        body = _exact(fh, blen - 12, 8)
        trailer = _exact(fh, 4, blen - 4)
        if struct.unpack(order + "I", trailer)[0] != blen:
            raise CaptureError("pcapng block lengths disagree (damaged file)")
        if btype == _BT_IDB:
            interfaces.append(_interface(body, order))
            continue
        rec = _packet(btype, body, order, interfaces)
        if rec is not None:
            yield rec


def _section(fh: BinaryIO, blen_raw: bytes) -> str:
    """The rest of a section header block, whose type and length fields are read;
    returns the section's byte order."""
    bom = _exact(fh, 4, 8)
    if struct.unpack("<I", bom)[0] == _BOM:
        order = "<"
    elif struct.unpack(">I", bom)[0] == _BOM:
        order = ">"
    else:
        raise CaptureError("pcapng section header without a byte-order mark")
    blen = struct.unpack(order + "I", blen_raw)[0]
    if blen < 28 or blen % 4 or blen > _MAX_BLOCK:
        raise CaptureError(f"pcapng section header of length {blen} (damaged file)")
    major = struct.unpack(order + "H", _exact(fh, 4, 12)[:2])[0]
    if major != 1:
        raise CaptureError(f"pcapng version {major} is not supported")
    _skip(fh, blen - 16, 16)
    return order


def _skip(fh: BinaryIO, n: int, already: int) -> None:
    """Reads past n bytes in chunks (seeking a gzip stream would decompress anyway,
    and a seek past the end of a plain file would hide a cut)."""
    done = 0
    while done < n:
        chunk = _read(fh, min(_SKIP_CHUNK, n - done), already + done)
        if not chunk:
            raise Cut(already + done)
        done += len(chunk)


def _interface(body: bytes, order: str) -> _Interface:
    if len(body) < 8:
        raise CaptureError("pcapng interface block too short (damaged file)")
    linktype, _res, snaplen = struct.unpack_from(order + "HHI", body)
    units, offset = 1e6, 0
    for code, value in _options(body[8:], order):
        if code == _OPT_TSRESOL and len(value) >= 1:
            v = value[0]
            units = float(2 ** (v & 0x7F) if v & 0x80 else 10 ** v)
        elif code == _OPT_TSOFFSET and len(value) >= 8:
            offset = struct.unpack(order + "q", value[:8])[0]
    return _Interface(linktype, snaplen, units, offset)


def _options(buf: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(buf):
        code, length = struct.unpack_from(order + "HH", buf, off)
        if code == 0:
            return
        yield code, buf[off + 4:off + 4 + length]
        off += 4 + ((length + 3) & ~3)


def _packet(btype: int, body: bytes, order: str,
            interfaces: list[_Interface]) -> Record | None:
    if btype == _BT_SPB:  # simple packet block: interface 0, no timestamp
        if len(body) < 4 or not interfaces:
            raise CaptureError("pcapng simple packet block without interface (damaged file)")
        wirelen = struct.unpack_from(order + "I", body)[0]
        iface = interfaces[0]
        caplen = min(wirelen, len(body) - 4, iface.snaplen or MAX_RECORD)
        return Record(float(iface.offset), iface.linktype, order == "<",
                      body[4:4 + caplen], wirelen)
    if len(body) < 20:
        raise CaptureError("pcapng packet block too short (damaged file)")
    if btype == _BT_EPB:
        ifid, high, low, caplen, wirelen = struct.unpack_from(order + "IIIII", body)
    else:  # obsolete packet block: 16-bit interface id and drop count
        ifid, _drops, high, low, caplen, wirelen = struct.unpack_from(order + "HHIIII", body)
    if ifid >= len(interfaces):
        raise CaptureError(f"pcapng packet on undefined interface {ifid} (damaged file)")
    if caplen > len(body) - 20:
        raise CaptureError("pcapng packet longer than its block (damaged file)")
    iface = interfaces[ifid]
    ts = iface.offset + ((high << 32) | low) / iface.units
    return Record(ts, iface.linktype, order == "<", body[20:20 + caplen],
                  max(wirelen, caplen))
