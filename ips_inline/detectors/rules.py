"""The `rules` detector: Suricata-syntax rules (ips_inline/rules/) as two
plug-ins sharing one loaded ruleset, both named "rules" in alerts and metrics:

- RulesHttp (a payload detector): http rules on each request, those without
  a body buffer when its head ends, those with one when its body ended;
- RulesPacket: tcp/udp/icmp/ip rules on each packet's payload, present only
  when the ruleset has such rules (it costs every packet otherwise).

A hit's action decides: `alert` logs only (shadow), `drop` and `reject` drop
(reject too: no RST is sent, the connection is blocked). Offences count
toward a ban only on a connection whose handshake the kernel proved: a
rule sees what a forger can send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..packet.decode import PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP, Packet
from ..packet.flows import Flow
from .base import BaseDetector, Context, Signature

if TYPE_CHECKING:
    from ..config import DetectorConfig
    from ..http.request import HttpRequest
    from ..rules import Hit, RuleSet


class _Request:
    """An HttpRequest as the rules read one (header names as sent)."""

    __slots__ = ("method", "target", "version", "request_line", "headers", "body", "body_cut")

    def __init__(self, req: HttpRequest) -> None:
        self.method, self.target, self.version = req.method, req.target, req.version
        self.request_line = req.request_line
        self.headers = req.fields
        self.body, self.body_cut = bytes(req.body), req.body_cut


class _FlowView:
    __slots__ = ("established", "to_server")

    def __init__(self, flow: Flow, pkt: Packet) -> None:
        self.established = flow.handshake
        self.to_server = flow.from_initiator(pkt)


def flow_view(flow: Flow | None, pkt: Packet) -> _FlowView | None:
    return None if flow is None else _FlowView(flow, pkt)


class _Hits:
    """Hits as Signatures, one object per rule and log state (no allocation
    per hit once seen)."""

    def __init__(self) -> None:
        self._sigs: dict[tuple[int, int, str, bool], Signature] = {}

    def __call__(self, hits: list[Hit]) -> tuple[Signature, ...] | None:
        if not hits:
            return None
        return tuple(self._sig(hit) for hit in hits)

    def _sig(self, hit: Hit) -> Signature:
        key = (hit.gid, hit.sid, hit.action, hit.log)
        sig = self._sigs.get(key)
        if sig is None:
            meta = tuple((k, tuple(v)) for k, v in hit.metadata.items())
            sig = Signature(hit.sid, hit.msg, hit.category, hit.severity, rev=hit.rev,
                            gid=hit.gid, metadata=meta,
                            action="alert" if hit.action == "alert" else "drop", log=hit.log)
            if len(self._sigs) < 65536:
                self._sigs[key] = sig
        return sig


class RulesHttp(BaseDetector):
    name = "rules"
    protocols = (PROTO_TCP,)
    payload = True
    proof_required = True

    def __init__(self, cfg: DetectorConfig, ctx: Context, ruleset: RuleSet) -> None:
        super().__init__(cfg, ctx)
        self.ruleset = ruleset
        self.sigs = _Hits()

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        return None  # requests come through inspect_unit (head and end)

    def inspect_unit(self, kind: str, req: HttpRequest, pkt: Packet, flow: Flow,
                     now: float) -> tuple[Signature, ...] | None:
        view = _Request(req)
        if kind == "head":
            return self.sigs(self.ruleset.match_http_head(view, pkt, flow_view(flow, pkt), now))
        return self.sigs(self.ruleset.match_http_body(view, pkt, flow_view(flow, pkt), now))


class RulesPacket(BaseDetector):
    name = "rules"
    protocols = (PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMP6)
    proof_required = True

    def __init__(self, cfg: DetectorConfig, ctx: Context, ruleset: RuleSet) -> None:
        super().__init__(cfg, ctx)
        self.ruleset = ruleset
        self.sigs = _Hits()

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> tuple[Signature, ...] | None:
        return self.sigs(self.ruleset.match_packet(pkt, flow_view(flow, pkt), now))
