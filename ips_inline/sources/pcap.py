"""Offline source: capture files -> (timestamp, L3 bytes), the same bytes NFQUEUE
would hand the engine. The container is read by `capfile`, the link layer is
stripped by `linklayer`; this module turns their outcomes into what a replay needs:
one-line errors, and how much of a cut-short last record was left out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType

from .capfile import CaptureError, Cut, Reader, is_capture, open_stream
from .linklayer import Strip, stripper

_NON_IP_NAMES = {  # link types seen in real captures that carry no IP we could read
    105: "IEEE 802.11", 119: "802.11 Prism", 127: "802.11 radiotap", 163: "802.11 AVS",
    192: "PPI", 195: "IEEE 802.15.4", 215: "IEEE 802.15.4 non-ASK PHY",
    230: "IEEE 802.15.4 without FCS", 283: "IEEE 802.15.4 TAP", 147: "user-defined",
}


class PcapError(Exception):
    """A capture that cannot be read; the message is one line for the user."""


class UnsupportedLinkType(PcapError):
    def __init__(self, path: str, linktype: int) -> None:
        name = _NON_IP_NAMES.get(linktype)
        super().__init__(f"{path}: unsupported link type {linktype}"
                         + (f" ({name})" if name else ""))
        self.linktype = linktype


class Capture:
    """One capture file, read as a stream (gzip decompressed on the fly). Iterate for
    (capture time, L3 bytes, or None for a frame that carries no IP). When the file
    ends inside a record (tcpdump killed mid-write), the iteration ends after the last
    complete one and `cut` holds the bytes of the partial record left out (None when
    the file ends cleanly; 0 when a gzip stream ends between records)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cut: int | None = None
        try:
            self._fh = open_stream(path)
        except OSError as exc:
            raise PcapError(f"cannot open {path}: {exc.strerror or exc}") from None
        try:
            self._reader = Reader(self._fh)
        except CaptureError as exc:
            self._fh.close()
            raise PcapError(f"{path}: {exc}") from None
        if self._reader.linktype is not None:
            self._strip_for(self._reader.linktype, True)  # refuse before any packet

    def _strip_for(self, linktype: int, little: bool) -> Strip:
        strip = stripper(linktype, little)
        if strip is None:
            raise UnsupportedLinkType(self.path, linktype)
        return strip

    def __iter__(self) -> Iterator[tuple[float, bytes | None]]:
        strips: dict[tuple[int, bool], Strip] = {}
        try:
            for rec in self._reader:
                key = (rec.linktype, rec.little)
                strip = strips.get(key)
                if strip is None:
                    strip = strips[key] = self._strip_for(rec.linktype, rec.little)
                yield rec.ts, strip(rec.frame, rec.wirelen)
        except Cut as cut:
            self.cut = cut.present
        except CaptureError as exc:
            raise PcapError(f"{self.path}: damaged capture ({exc})") from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_packets(path: str) -> Iterator[tuple[float, bytes | None]]:
    """Yield (capture time, L3 bytes or None for non-IP frames) per frame."""
    with Capture(path) as cap:
        yield from cap


def looks_like_capture(path: str) -> bool:
    """Whether a file starts with a capture's magic (after gzip, if compressed)."""
    try:
        with open_stream(path) as fh:
            return is_capture(fh.read(4))
    except (OSError, EOFError):
        return False


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
