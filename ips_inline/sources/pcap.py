"""Offline source: pcap/pcapng files -> (timestamp, L3 bytes), the same bytes
NFQUEUE would hand the engine. Link layers are stripped by slicing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import dpkt

_ETH_IP = frozenset((0x0800, 0x86DD))
_VLAN = frozenset((0x8100, 0x88A8))
DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LOOP, DLT_LINUX_SLL, DLT_LINUX_SLL2 = 0, 1, 101, 108, 113, 276
_RAW_ALIASES = frozenset((12, 14, DLT_RAW, 228, 229))  # BSD/OpenBSD raw, IPv4-only, IPv6-only


class PcapError(Exception):
    """A capture that cannot be read; the message is one line for the user."""


# A frame shorter than its link header yields b"": the engine counts it as
# malformed rather than silently passing it over as non-IP.


def _strip_ethernet(buf: bytes) -> bytes | None:
    if len(buf) < 14:
        return b""
    off = 12
    etype = int.from_bytes(buf[12:14], "big")
    while etype in _VLAN:
        off += 4
        etype = int.from_bytes(buf[off:off + 2], "big")
    return buf[off + 2:] if etype in _ETH_IP else None


def _strip_sll(buf: bytes) -> bytes | None:
    if len(buf) < 16:
        return b""
    return buf[16:] if int.from_bytes(buf[14:16], "big") in _ETH_IP else None


def _strip_sll2(buf: bytes) -> bytes | None:
    if len(buf) < 20:
        return b""
    return buf[20:] if int.from_bytes(buf[0:2], "big") in _ETH_IP else None


def _strip_null(buf: bytes) -> bytes | None:
    if len(buf) <= 4:
        return b""
    return buf[4:] if buf[4] >> 4 in (4, 6) else None


_STRIPPERS = {DLT_EN10MB: _strip_ethernet, DLT_LINUX_SLL: _strip_sll,
              DLT_LINUX_SLL2: _strip_sll2, DLT_NULL: _strip_null, DLT_LOOP: _strip_null}


def _open_reader(fh: BinaryIO, path: str):
    magic = fh.read(4)
    fh.seek(0)
    try:
        if magic == b"\x0a\x0d\x0d\x0a":
            return dpkt.pcapng.Reader(fh)
        return dpkt.pcap.Reader(fh)
    except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError) as exc:
        raise PcapError(f"{path}: not a pcap or pcapng file ({exc})") from None


def read_packets(path: str) -> Iterator[tuple[float, bytes | None]]:
    """Yield (capture time, L3 bytes or None for non-IP frames) per frame."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally, generator lifetime
    except OSError as exc:
        raise PcapError(f"cannot open {path}: {exc.strerror}") from None
    try:
        reader = _open_reader(fh, path)
        linktype = reader.datalink()
        strip = _STRIPPERS.get(linktype)
        if strip is None and linktype not in _RAW_ALIASES:
            raise PcapError(f"{path}: unsupported link type {linktype}")
        try:
            for ts, frame in reader:
                yield float(ts), (strip(frame) if strip else frame)
        except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, OSError) as exc:
            raise PcapError(f"{path}: damaged capture ({exc})") from None
    finally:
        fh.close()


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
