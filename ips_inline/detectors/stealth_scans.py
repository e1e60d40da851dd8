"""null_scan, fin_scan, xmas_scan: TCP flag combinations no real stack sends
outside a connection (nmap -sN, -sF, -sX), counted as distinct destination
ports per source within a window.

One such segment is no evidence: a FIN on a connection the kernel lost (a
restart, an expiry) looks the same, and any single packet can be forged in
anyone's name. A scan probes many ports: only several distinct ports within
the window make it one. The kernel marks all of them INVALID (conntrack's
flag table), and the engine drops INVALID packets after the detectors have
counted them, so a scanner learns nothing even before its ban.
"""

from __future__ import annotations

from typing import ClassVar

from ..packet.conntrack import PROBES
from ..packet.decode import ACK, FIN, PROTO_TCP, PSH, URG, Packet
from ..packet.flows import Flow
from ..packet.tables import PortSet
from .base import BaseDetector, Context, Signature

_FLAG_BITS = 0x3F  # FIN..URG; ECE/CWR are congestion bits, not part of the scan
_XMAS = FIN | PSH | URG
SIG_NULL = Signature(1000005, "TCP NULL scan (no flags)", "Attempted Information Leak", 2)
SIG_FIN = Signature(1000006, "TCP FIN scan (FIN without a connection)",
                    "Attempted Information Leak", 2)
SIG_XMAS = Signature(1000007, "TCP Xmas scan (FIN+PSH+URG)", "Attempted Information Leak", 2)


class _StealthScan(BaseDetector):
    protocols = (PROTO_TCP,)
    sig: ClassVar[Signature]

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.sources = ctx.table(f"{self.name}_sources")

    @staticmethod
    def fires_on(flags: int) -> bool:
        raise NotImplementedError

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if not self.fires_on(pkt.flags) or pkt.ct not in PROBES:
            return None  # a FIN of a connection the kernel tracks is no probe
        ports = PortSet.count(self.sources, pkt, now, self.window, self.threshold)
        return self.sig if ports > self.threshold else None


class NullScan(_StealthScan):
    name = "null_scan"
    sig = SIG_NULL

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _FLAG_BITS == 0


class FinScan(_StealthScan):
    name = "fin_scan"
    sig = SIG_FIN

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _FLAG_BITS == FIN


class XmasScan(_StealthScan):
    name = "xmas_scan"
    sig = SIG_XMAS

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & _XMAS == _XMAS and not flags & ACK
