"""port_scan: distinct destination ports (TCP or UDP) per source in a window.

Only packets that open or probe count (the kernel's conntrack says NEW or
INVALID: packet/conntrack.py): the replies the host receives from servers it
queried (its DNS resolver's answers to many client ports) and the packets of
connections the kernel tracks never add up. TCP counts segments without ACK
or RST (a reset answers something; it probes nothing).
"""

from __future__ import annotations

from ..packet.conntrack import PROBES
from ..packet.decode import ACK, PROTO_TCP, PROTO_UDP, RST, Packet
from ..packet.flows import Flow
from ..packet.tables import PortSet
from .base import BaseDetector, Context, Signature

SIG = Signature(1000004, "Port scan: many distinct destination ports",
                "Attempted Information Leak", 2)
EVIDENCE_PORTS = 64  # probed ports an alert lists at most (the threshold is configurable)


class PortScan(BaseDetector):
    name = "port_scan"
    protocols = (PROTO_TCP, PROTO_UDP)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return not flags & (ACK | RST)

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.sources = ctx.table("scan_sources")

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if pkt.ct not in PROBES or pkt.proto == PROTO_TCP and pkt.flags & (ACK | RST):
            return None
        return SIG if PortSet.count(self.sources, pkt, now, self.window,
                                    self.threshold) > self.threshold else None

    def evidence(self, pkt: Packet, now: float) -> dict[str, list[str]]:
        entry = self.sources.get(pkt.src, now)
        if entry is None:
            return {}
        return {"ports": [str(p) for p in sorted(entry.ports)[:EVIDENCE_PORTS]]}
