"""icmp_flood: ICMP/ICMPv6 echo requests per source over a sliding window
(requests only: an echo request is never a reply, whatever its conntrack
state; repeated requests of one ping are ESTABLISHED after the first answer)."""

from __future__ import annotations

from ..packet.decode import PROTO_ICMP, PROTO_ICMP6, Packet
from ..packet.flows import Flow
from ..packet.tables import RateWindow
from .base import BaseDetector, Context, Signature

_ECHO = {PROTO_ICMP: 8, PROTO_ICMP6: 128}
SIG = Signature(1000001, "ICMP echo request flood", "Attempted Denial of Service", 2)


class IcmpFlood(BaseDetector):
    name = "icmp_flood"
    protocols = (PROTO_ICMP, PROTO_ICMP6)

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.rates = ctx.table("icmp_sources")

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        if pkt.icmp_type != _ECHO[pkt.proto]:
            return None
        rate = self.rates.get(pkt.src, now)
        if rate is None:
            rate = RateWindow(now)
            self.rates.put(pkt.src, rate)
        return SIG if rate.hit(now, self.window) > self.threshold else None
