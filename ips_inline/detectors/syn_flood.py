"""syn_flood: connection attempts (SYN without ACK) per source over a sliding
window, and half-open connections per source (SYN seen, handshake never
completed), counted by the flow table. Only SYNs the kernel sees as opening
something count (conntrack NEW or INVALID: a SYN on a live connection is the
host's business)."""

from __future__ import annotations

from ..packet.conntrack import PROBES
from ..packet.decode import ACK, PROTO_TCP, SYN, Packet
from ..packet.flows import Flow
from ..packet.tables import RateWindow
from .base import BaseDetector, Context, Signature

SIG_RATE = Signature(1000002, "TCP SYN flood (rate)", "Attempted Denial of Service", 2)
SIG_HALF_OPEN = Signature(1000003, "TCP SYN flood (half-open connections)",
                          "Attempted Denial of Service", 2)


class SynFlood(BaseDetector):
    name = "syn_flood"
    protocols = (PROTO_TCP,)

    @staticmethod
    def fires_on(flags: int) -> bool:
        return flags & (SYN | ACK) == SYN

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.half_open_threshold = cfg.half_open_threshold
        self.rates = ctx.table("syn_sources")

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if pkt.flags & (SYN | ACK) != SYN or pkt.ct not in PROBES:
            return None
        rate = self.rates.get(pkt.src, now)
        if rate is None:
            rate = RateWindow(now)
            self.rates.put(pkt.src, rate)
        if rate.hit(now, self.window) > self.threshold:
            return SIG_RATE
        limit = self.half_open_threshold
        if limit and self.ctx.flows.half_open(pkt.src) > limit:
            return SIG_HALF_OPEN
        return None
