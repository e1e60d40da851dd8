"""port_scan: distinct destination ports (TCP or UDP) per source in a window.

TCP counts only segments that could open or probe a port (no ACK flag), so the
established traffic of a busy client never adds up. UDP replies from common
service ports (DNS, NTP, QUIC...) land on random ephemeral ports and are not
counted, or every resolver would look like a scanner.
"""

from __future__ import annotations

from ..packet.decode import ACK, PROTO_TCP, PROTO_UDP, Packet
from ..packet.flows import Flow
from .base import BaseDetector, Context, Signature

SIG = Signature(1000004, "Port scan: many distinct destination ports",
                "Attempted Information Leak", 2)
_SERVICE_PORTS = frozenset((53, 67, 68, 123, 137, 138, 443, 1900, 5353))
EVIDENCE_PORTS = 64  # probed ports an alert lists at most (the threshold is configurable)


class _Ports:
    __slots__ = ("seen", "start", "ports")

    def __init__(self, now: float) -> None:
        self.seen = self.start = now
        self.ports: set[int] = set()


class PortScan(BaseDetector):
    name = "port_scan"
    protocols = (PROTO_TCP, PROTO_UDP)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return not flags & ACK

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.sources = ctx.table("scan_sources")

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if pkt.proto == PROTO_TCP:
            if pkt.flags & ACK:
                return None
        elif pkt.sport in _SERVICE_PORTS and pkt.dport >= 1024:
            return None
        entry = self.sources.get(pkt.src, now)
        if entry is None:
            entry = _Ports(now)
            self.sources.put(pkt.src, entry)
        elif now - entry.start > self.window:
            entry.start = now
            entry.ports.clear()
        entry.seen = now
        ports = entry.ports
        if len(ports) <= self.threshold:  # the set stops growing once it has fired
            ports.add(pkt.dport)
        return SIG if len(ports) > self.threshold else None

    def evidence(self, pkt: Packet, now: float) -> dict[str, list[str]]:
        entry = self.sources.get(pkt.src, now)
        if entry is None:
            return {}
        return {"ports": [str(p) for p in sorted(entry.ports)[:EVIDENCE_PORTS]]}
