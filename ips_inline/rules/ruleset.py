"""A loaded rule set: prefilter, evaluation, actions and thresholds.

Three entry points, one per moment the engine has something to inspect:
match_packet (tcp/udp/icmp/ip rules on one packet's payload), match_http_head
(http rules that need no body) and match_http_body (http rules with a body
buffer). Each returns the hits of that call, drop/reject before alert, or
none at all if a `pass` rule matched (Suricata's action order pass > drop >
reject > alert). Pass rules are stateless, so they are evaluated wherever
they can exempt traffic: packet pass rules also in the http calls (on the
packet that completed the request), head pass rules also in the body call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .buffers import HttpBuffers
from .match import Budget, Content, chain
from .parser import Rule, Skipped
from .prefilter import Prefilter
from .threshold import ThresholdTable, Tuple5
from .views import FlowView, PacketView, RequestView

_ORDER = {"pass": 0, "drop": 1, "reject": 2, "alert": 3}
_PORTED = frozenset({6, 17})
_PORT_INDEX_LIMIT = 64  # a rule on at most this many destination ports is indexed by port


@dataclass(frozen=True)
class Hit:
    sid: int
    gid: int
    rev: int
    msg: str
    classtype: str  # the short name, e.g. "web-application-attack"
    category: str  # its description, as Suricata's EVE alert.category
    severity: int  # 1 (high) .. 4
    action: str  # "alert" | "drop" | "reject"
    metadata: dict[str, list[str]] = field(hash=False, compare=False)
    log: bool = True  # False: a threshold suppressed the alert, the action still applies


class _PacketBuffers:
    __slots__ = ("payload", "_lower")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload or None
        self._lower: bytes | None = None

    def get(self, _name: str) -> bytes | None:
        return self.payload

    def lower(self, _name: str) -> bytes | None:
        if self._lower is None and self.payload is not None:
            self._lower = self.payload.lower()
        return self._lower


Buffers = HttpBuffers | _PacketBuffers


def _needle(c: Content) -> bytes:
    if c.fp_chop is None:
        return c.pattern
    off, ln = c.fp_chop
    return c.pattern[off:off + ln]


class _Index:
    """The rules of one phase: a prefilter per buffer for those with a fast
    pattern; the others listed, packet ones by protocol and destination port."""

    def __init__(self, rules: list[Rule], ids: list[int]) -> None:
        by_buffer: dict[str, list[tuple[bytes, bool, int]]] = {}
        self.always: list[int] = []
        self.by_port: dict[tuple[int, int], list[int]] = {}
        for rid in ids:
            rule = rules[rid]
            if rule.fast is not None:
                c = rule.fast
                by_buffer.setdefault(c.buffer, []).append((_needle(c), c.nocase, rid))
            elif not self._index_port(rule, rid):
                self.always.append(rid)
        self.prefilters = {buf: Prefilter(n) for buf, n in by_buffer.items()}

    def _index_port(self, rule: Rule, rid: int) -> bool:
        if rule.http or rule.bidirectional or rule.protos is None:
            return False
        ports = rule.dport.finite(_PORT_INDEX_LIMIT)
        if ports is None or not rule.protos <= _PORTED:
            return False
        for proto in rule.protos:
            for port in ports:
                self.by_port.setdefault((proto, port), []).append(rid)
        return True

    def __bool__(self) -> bool:
        return bool(self.always or self.by_port or self.prefilters)

    def candidates(self, bufs: Buffers, pkt: PacketView) -> list[int]:
        out: set[int] = set(self.always)
        if self.by_port and pkt.proto in _PORTED:
            out.update(self.by_port.get((pkt.proto, pkt.dport), ()))
        for name, pf in self.prefilters.items():
            buf = bufs.get(name)
            if buf:
                pf.scan(buf, out)
        return sorted(out)


class RuleSet:
    def __init__(self, rules: list[Rule], skipped: list[Skipped], max_tracked: int = 65536,
                 ) -> None:
        self.rules = rules
        self.skipped = skipped
        self.thresholds = ThresholdTable(max_tracked)
        self.budget_exhausted = 0  # rule evaluations cut by the step budget
        phases: dict[str, list[int]] = {"packet": [], "head": [], "body": []}
        for rid, rule in enumerate(rules):
            phases[rule.phase].append(rid)
        self._packet = _Index(rules, phases["packet"])
        self._head = _Index(rules, phases["head"])
        self._body = _Index(rules, phases["body"])
        self._packet_pass = _Index(rules, [r for r in phases["packet"]
                                           if rules[r].action == "pass"])
        self._head_pass = _Index(rules, [r for r in phases["head"]
                                         if rules[r].action == "pass"])

    @property
    def loaded(self) -> int:
        return len(self.rules)

    @property
    def tracked(self) -> int:
        """Threshold keys held (bounded by max_tracked)."""
        return len(self.thresholds)

    def carry_state_from(self, old: RuleSet) -> None:
        """Keep the threshold counts across a reload (same gid:sid, same keys)."""
        self.thresholds = old.thresholds

    # -- entry points ------------------------------------------------------
    def match_packet(self, pkt: PacketView, flow: FlowView | None, now: float) -> list[Hit]:
        bufs = _PacketBuffers(pkt.payload)
        return self._run(self._packet.candidates(bufs, pkt), pkt, flow, bufs, now, False)

    def match_http_head(self, req: RequestView, pkt: PacketView, flow: FlowView | None,
                        now: float) -> list[Hit]:
        if self._passed(self._packet_pass, pkt, flow, _PacketBuffers(pkt.payload), False):
            return []
        bufs = HttpBuffers(req)
        return self._run(self._head.candidates(bufs, pkt), pkt, flow, bufs, now, True)

    def match_http_body(self, req: RequestView, pkt: PacketView, flow: FlowView | None,
                        now: float) -> list[Hit]:
        if self._passed(self._packet_pass, pkt, flow, _PacketBuffers(pkt.payload), False):
            return []
        bufs = HttpBuffers(req)
        if self._passed(self._head_pass, pkt, flow, bufs, True):
            return []
        return self._run(self._body.candidates(bufs, pkt), pkt, flow, bufs, now, True)

    # -- evaluation ----------------------------------------------------------
    def _passed(self, index: _Index, pkt: PacketView, flow: FlowView | None, bufs: Buffers,
                http: bool) -> bool:
        return bool(index) and any(self._matches(self.rules[rid], pkt, flow, bufs, http)
                   for rid in index.candidates(bufs, pkt))

    def _run(self, cands: Iterable[int], pkt: PacketView, flow: FlowView | None,
             bufs: Buffers, now: float, http: bool) -> list[Hit]:
        rules = self.rules
        ordered = sorted(cands, key=lambda rid: (_ORDER[rules[rid].action], rid))
        hits: list[Hit] = []
        for rid in ordered:
            rule = rules[rid]
            if not self._matches(rule, pkt, flow, bufs, http):
                continue
            if rule.action == "pass":
                return []
            hit = self._hit(rule, pkt, now)
            if hit is not None:
                hits.append(hit)
        return hits

    def _hit(self, rule: Rule, pkt: PacketView, now: float) -> Hit | None:
        log = not rule.noalert
        if rule.threshold is not None:
            t = Tuple5(pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto)
            act, logged = self.thresholds.check((rule.gid, rule.sid), rule.threshold, t, now)
            if not act:
                return None
            log = log and logged
        if not log and rule.action == "alert":
            return None  # an alert nobody sees and nothing to enforce
        return Hit(rule.sid, rule.gid, rule.rev, rule.msg, rule.classtype, rule.category,
                   rule.severity, rule.action, rule.metadata, log)

    def _matches(self, rule: Rule, pkt: PacketView, flow: FlowView | None, bufs: Buffers,
                 http: bool) -> bool:
        if not _header(rule, pkt) or not _flow_ok(rule, flow, http):
            return False
        if rule.flags is not None and not _flags_ok(rule, pkt):
            return False
        if rule.dsize is not None and not rule.dsize(len(pkt.payload)):
            return False
        if rule.itype is not None and (pkt.proto not in (1, 58) or not rule.itype(pkt.icmp_type)):
            return False
        budget = Budget()
        for name, items in rule.groups:
            buf = bufs.get(name)
            if buf is None:
                return False
            if not chain(items, buf, bufs.lower(name) or b"", budget):
                if budget.exhausted:
                    self.budget_exhausted += 1
                return False
        return True


def _one_way(rule: Rule, src: bytes, sport: int, dst: bytes, dport: int, ported: bool) -> bool:
    if not (rule.src.match(src) and rule.dst.match(dst)):
        return False
    if rule.sport.anything and rule.dport.anything:
        return True
    return ported and rule.sport.match(sport) and rule.dport.match(dport)


def _header(rule: Rule, pkt: PacketView) -> bool:
    if rule.protos is not None and pkt.proto not in rule.protos:
        return False
    ported = pkt.proto in _PORTED
    if _one_way(rule, pkt.src, pkt.sport, pkt.dst, pkt.dport, ported):
        return True
    return rule.bidirectional and _one_way(rule, pkt.dst, pkt.dport, pkt.src, pkt.sport, ported)


def _flow_ok(rule: Rule, flow: FlowView | None, http: bool) -> bool:
    spec = rule.flow
    if spec is None:
        return True
    if http:  # a request goes to the server, on a connection the engine parsed
        established = flow is None or flow.established
        return spec.established is None or spec.established == established
    established = flow is not None and flow.established
    if spec.established is not None and established != spec.established:
        return False
    if spec.to_server is None:
        return True
    return flow is not None and flow.to_server == spec.to_server


def _flags_ok(rule: Rule, pkt: PacketView) -> bool:
    spec = rule.flags
    assert spec is not None
    if pkt.proto != 6:
        return False
    f = pkt.flags & ~spec.mask & 0xFF
    if spec.mode == "exact":
        return f == spec.flags
    if spec.mode == "all":
        return f & spec.flags == spec.flags
    if spec.mode == "any":
        return f & spec.flags != 0
    return f & spec.flags != spec.flags  # "not": not all of them set (Suricata)

