"""null_scan, fin_scan, xmas_scan: TCP flag combinations no real stack sends
(nmap -sN, -sF, -sX). One such segment is evidence enough."""

from __future__ import annotations

from ..packet.decode import ACK, FIN, PROTO_TCP, PSH, URG, Packet
from ..packet.flows import Flow
from .base import BaseDetector, Signature

_FLAG_BITS = 0x3F  # FIN..URG; ECE/CWR are congestion bits, not part of the scan
_XMAS = FIN | PSH | URG
SIG_NULL = Signature(1000005, "TCP NULL scan (no flags)", "Attempted Information Leak", 2)
SIG_FIN = Signature(1000006, "TCP FIN scan (FIN without a connection)",
                    "Attempted Information Leak", 2)
SIG_XMAS = Signature(1000007, "TCP Xmas scan (FIN+PSH+URG)", "Attempted Information Leak", 2)


class NullScan(BaseDetector):
    name = "null_scan"
    protocols = (PROTO_TCP,)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _FLAG_BITS == 0

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        return SIG_NULL if pkt.flags & _FLAG_BITS == 0 else None


class FinScan(BaseDetector):
    name = "fin_scan"
    protocols = (PROTO_TCP,)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _FLAG_BITS == FIN

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if pkt.flags & _FLAG_BITS != FIN or (flow is not None and flow.established):
            return None
        return SIG_FIN


class XmasScan(BaseDetector):
    name = "xmas_scan"
    protocols = (PROTO_TCP,)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _XMAS == _XMAS and not flags & ACK

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        return SIG_XMAS if pkt.flags & _XMAS == _XMAS and not pkt.flags & ACK else None
