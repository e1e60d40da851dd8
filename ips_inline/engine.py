"""The engine: one packet in, one verdict out.

    decode -> ban check -> flow state -> detectors (by protocol) -> HTTP
    requests -> payload detectors -> verdict -> offences/bans (enforcer)

Alerts and bans go to an EventSink on the side; counters live in `Stats` and
are read by metrics at scrape time. The engine never reads the clock: live
passes wall time, replay passes capture time, so a replay is deterministic.
One engine per worker process; it is not thread-safe and needs no locks.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from .bans import BanManager, Whitelist
from .config import Config
from .detectors import Context, Detector, build
from .detectors.base import Signature
from .eve import Cause, EventSink, alert_record, ban_record, unban_record
from .http.clean import CleanValues
from .http.stream import HttpRequest, HttpStream
from .packet.decode import MALFORMED_REASONS, PROTO_TCP, Malformed, Packet, decode
from .packet.defrag import COMPLETE, HELD, Defrag
from .packet.flows import Flow, FlowTable, StreamError

log = logging.getLogger(__name__)

# Verdicts. BYPASS accepts and asks the kernel to stop queueing the connection.
DROP, ACCEPT, BYPASS = 0, 1, 2
# (verdict, reason) label pairs; Stats.verdicts is indexed by these codes, and
# a request's worst outcome is their max, so the order matters.
REASONS = (("accept", "clean"), ("accept", "whitelist"), ("accept", "alert_only"),
           ("accept", "malformed"), ("accept", "error"), ("drop", "detector"),
           ("drop", "banned"), ("drop", "malformed"), ("drop", "error"), ("accept", "bypass"),
           ("drop", "stream_conflict"), ("drop", "stream_overflow"), ("accept", "fragment_held"),
           ("drop", "fragment"), ("drop", "truncated"))
(CLEAN, WHITELISTED, ALERT_ONLY, MALFORMED_OK, ERROR_OK, DETECTED, BANNED,
 MALFORMED_DROP, ERROR_DROP, BYPASSED, STREAM_CONFLICT, STREAM_OVERFLOW, FRAGMENT_HELD,
 FRAGMENT_DROP, TRUNCATED_DROP) = range(len(REASONS))
_VERDICT = tuple(BYPASS if reason == "bypass" else ACCEPT if verdict == "accept" else DROP
                 for verdict, reason in REASONS)
ERROR_LOG_INTERVAL = 10.0  # seconds between tracebacks of engine errors
SWEEP_INTERVAL = 5.0  # seconds of engine time between expiry sweeps
_TCP_FLAG_BITS = 0x3F  # FIN..URG: what the TCP detectors look at (not ECE/CWR)
_TCP_FLAG_COMBOS = _TCP_FLAG_BITS + 1


class Stats:
    """Plain counters: cheap to bump per packet, read by metrics when scraped."""

    def __init__(self) -> None:
        self.verdicts = [0] * len(REASONS)
        self.alerts: Counter[str] = Counter()
        self.bans: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter(dict.fromkeys(MALFORMED_REASONS, 0))
        self.exceptions = 0
        self.truncated = 0  # shorter than their IP header says (NFQUEUE copy limit)

    @property
    def packets(self) -> int:
        return sum(self.verdicts)

    def count(self, verdict: str) -> int:
        return sum(n for n, (v, _r) in zip(self.verdicts, REASONS, strict=True) if v == verdict)


class Engine:
    def __init__(self, cfg: Config, bans: BanManager, sink: EventSink) -> None:
        self.sink = sink
        self.stats = Stats()
        self._verdicts = self.stats.verdicts  # the same list: one lookup less per packet
        self.bans = bans
        self._banned = bans.active  # the same dict, for a cheap membership test
        bans.on_ban = self._on_ban
        bans.on_unban = self._on_unban
        self.flows = FlowTable(cfg.engine.max_flows, cfg.engine.flow_ttl, cfg.engine.half_open_ttl)
        self._last_alert: dict[tuple[bytes, str], float] = {}
        self._next_sweep = 0.0
        self._ctx: Context | None = None
        self._next_error_log = 0.0
        self.defrag = Defrag()
        # Live: the input interface of the packet being judged (EVE in_iface);
        # called only when an alert record is written.
        self.get_iface: Callable[[], str | None] | None = None
        self._cause: Cause | None = None  # the last alert's packet: its ban names the flow
        self.reconfigure(cfg)

    def reconfigure(self, cfg: Config) -> None:
        """Apply a new config (SIGHUP). Connections, bans and counters stay;
        detectors start afresh with their new thresholds."""
        self.cfg = cfg
        self.bans.cfg = cfg.bans
        self.whitelist = self.bans.whitelist = Whitelist(cfg.engine.whitelist)
        self._ctx = Context(cfg.engine, self.flows, self._ctx.tables if self._ctx else {})
        self.detectors = build(cfg, self._ctx)
        for det in self.detectors:
            self.stats.alerts.setdefault(det.name, 0)
        packet_dets = [d for d in self.detectors if not d.payload]
        self._dispatch: dict[int, tuple[Detector, ...]] = {}  # other protocols
        for det in packet_dets:
            for proto in det.protocols:
                if proto != PROTO_TCP:
                    self._dispatch[proto] = (*self._dispatch.get(proto, ()), det)
        # TCP by flags (FIN..URG): a segment meets only detectors that can fire on it.
        self._tcp: tuple[tuple[Detector, ...], ...] = tuple(
            tuple(d for d in packet_dets if PROTO_TCP in d.protocols and d.fires_on(flags))
            for flags in range(_TCP_FLAG_COMBOS))
        self._payload = tuple(d for d in self.detectors if d.payload)
        self._clean = CleanValues()  # new rules: what was clean must be looked at again
        self._bypass_after = cfg.engine.bypass_after_packets

    def process(self, buf: bytes, now: float) -> int:
        """Verdict for one packet: DROP, ACCEPT or BYPASS. Never raises."""
        try:
            pkt = decode(buf)
        except Malformed as exc:
            return self._malformed(exc.reason)
        except Exception:  # a decoder bug must not take the daemon down
            return self._malformed("decode_error")
        try:
            if pkt.fragment or pkt.truncated:  # rare: one check keeps them off the fast path
                return self._unusual(buf, pkt, now)
            return self._inspect(pkt, now)
        except Exception:
            self.stats.exceptions += 1
            if now >= self._next_error_log:  # crafted packets must not flood the log
                self._next_error_log = now + ERROR_LOG_INTERVAL
                log.exception("engine error on a packet from %s (%d so far)", pkt.src_ip,
                              self.stats.exceptions)
            return self._verdict(self.cfg.engine.error_policy == "accept", ERROR_OK, ERROR_DROP)

    def _malformed(self, reason: str) -> int:
        self.stats.malformed[reason] += 1
        return self._verdict(self.cfg.engine.malformed_policy == "accept", MALFORMED_OK,
                             MALFORMED_DROP)

    def _verdict(self, accept: bool, if_accept: int, if_drop: int) -> int:
        self.stats.verdicts[if_accept if accept else if_drop] += 1
        return ACCEPT if accept else DROP

    def _inspect(self, pkt: Packet, now: float) -> int:
        if now >= self._next_sweep:  # expire(), inlined: this runs per packet
            self.sweep(now)
        if pkt.src in self._banned and self.bans.is_banned(pkt.src, now):  # a dict hit first
            self._verdicts[BANNED] += 1
            return DROP
        if pkt.proto == PROTO_TCP:
            return self._segment(pkt, now)
        for det in self._dispatch.get(pkt.proto, ()):
            sig = det.inspect(pkt, None, now)
            if sig is not None:
                return self._count(self._hit(det, sig, pkt, None, now))
        self._verdicts[CLEAN] += 1
        return ACCEPT

    def _segment(self, pkt: Packet, now: float) -> int:
        """A TCP segment: connection state, the detectors that can fire on its
        flags, then the initiator's stream (HTTP) and bypass."""
        flow = self.flows.track(pkt, now)
        if flow is not None:
            if flow.blocked:
                return self._count(DETECTED)
            if flow.bypassed:  # live, the kernel stops queueing it; replay does likewise
                return self._count(BYPASSED)
        for det in self._tcp[pkt.flags & _TCP_FLAG_BITS]:
            sig = det.inspect(pkt, flow, now)
            if sig is not None:
                return self._count(self._hit(det, sig, pkt, flow, now))
        if flow is None:
            self._verdicts[CLEAN] += 1
            return ACCEPT
        code = CLEAN
        if (pkt.payload and pkt.src == flow.src and flow.established
                and not (flow.http is not None and flow.http.dead)):
            code = self._inspect_stream(pkt, flow, now)
        flow.packets += 1
        if code == CLEAN and flow.packets >= self._bypass_after and self._bypass_after:
            code = self._maybe_bypass(flow)
        return self._count(code)

    def _count(self, code: int) -> int:
        self._verdicts[code] += 1
        return _VERDICT[code]

    def _maybe_bypass(self, flow: Flow) -> int:
        """Bypass a connection once it has shown it carries nothing left to
        inspect: its stream is not HTTP (or past the buffer bounds), or every
        request so far was complete and clean and nothing is half-buffered."""
        http = flow.http
        if http is None or not (http.dead or (http.requests and not http.buf)):
            return CLEAN
        flow.bypassed = True
        return BYPASSED

    def _inspect_stream(self, pkt: Packet, flow: Flow, now: float) -> int:
        """A data segment from the initiator: reassemble, cut HTTP requests,
        run the payload detectors on each complete one. The segment that
        completes an attacking request is the one dropped."""
        code = CLEAN
        try:
            data = flow.reassemble(pkt.seq, pkt.payload)
        except StreamError as exc:  # overlap with other bytes, or too far out of order
            return REASONS.index(("drop", exc.reason))
        if data:
            if flow.http is None:
                flow.http = HttpStream(self.cfg.engine.http_max_head,
                                       self.cfg.engine.http_max_body)
            for request in flow.http.feed(data):
                code = max(code, self._inspect_request(request, pkt, flow, now))
                if code == DETECTED:
                    break
        return code

    def _inspect_request(self, request: HttpRequest, pkt: Packet, flow: Flow, now: float) -> int:
        parts = self._clean.unseen(request.parts)
        if not parts:
            return CLEAN
        request.select(parts)
        flow.request = request
        try:
            for det in self._payload:
                sig = det.inspect(pkt, flow, now)
                if sig is not None:
                    return self._hit(det, sig, pkt, flow, now)  # one alert per request
        finally:
            flow.request = None
        self._clean.add(parts)  # every detector looked at every value
        return CLEAN

    def _hit(self, det: Detector, sig: Signature, pkt: Packet, flow: Flow | None,
             now: float) -> int:
        """Alert, and unless whitelisted or alert-only: drop and count an
        offence. Returns the verdict reason code."""
        name = det.name
        whitelisted = pkt.src in self.whitelist
        block = det.cfg.mode == "block" and not whitelisted
        # Payload attacks need a real handshake to count toward a ban: a
        # spoofed source cannot complete one, so it cannot get someone banned.
        counts = block and det.cfg.ban_after > 0 and (not det.payload or flow.handshake)
        self.stats.alerts[name] += 1
        self._alert(det, sig, pkt, flow, block, det.cfg.ban_after if counts else 0, now)
        if not block:
            return WHITELISTED if whitelisted else ALERT_ONLY
        if det.payload:
            flow.blocked = True  # the rest of this connection carries the attack
        if counts:
            self.bans.offence(pkt.src, name, det.cfg.ban_after, now)
        return DETECTED

    def _alert(self, det: Detector, sig: Signature, pkt: Packet, flow: Flow | None,
               blocked: bool, ban_after: int, now: float) -> None:
        """EVE record; rate detectors log at most one per source+detector per
        alert_interval so a flood in alert-only mode does not flood the log.
        `ban_after`: offences that make a ban, if this one counts (else 0)."""
        self._cause = (pkt, flow, now)
        name = det.name
        if not det.payload:  # each payload attack is its own event; rate hits repeat
            key = (pkt.src, name)
            last = self._last_alert.get(key)
            if last is not None and now - last < self.cfg.engine.alert_interval:
                return
            if len(self._last_alert) >= self.cfg.engine.max_sources:
                self._last_alert.clear()
            self._last_alert[key] = now
        if not self.sink.wants("alert"):  # past the log's budget: counted there, not built
            return
        meta = det.evidence(pkt, now)
        if ban_after:
            meta["offences"] = [str(self.bans.offences(pkt.src, name, now) + 1)]
            meta["ban_after"] = [str(ban_after)]
        eve = self.cfg.eve
        self.sink.emit(alert_record(
            pkt, name, sig, blocked, now, flow=flow, meta=meta,
            request=flow.request if flow is not None and det.payload else None,
            iface=self.get_iface() if self.get_iface is not None else None,
            payload_max=eve.payload_max if eve.payload else 0))

    def _on_ban(self, src: bytes, detector: str, duration: int, count: int, now: float) -> None:
        self.stats.bans[detector] += 1
        self.sink.emit(ban_record(src, detector, duration, count, now, cause=self._cause))

    def _on_unban(self, src: bytes, reason: str, now: float) -> None:
        self.sink.emit(unban_record(src, reason, now))

    def expire(self, now: float) -> None:
        """Sweep if one is due: for callers outside the packet path (the
        daemon's idle tick), so idle state still expires without traffic."""
        if now >= self._next_sweep:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Expire idle state in every table (bounded work every few seconds)."""
        self._next_sweep = now + SWEEP_INTERVAL
        self.flows.sweep(now)
        self.defrag.sweep(now)
        self.bans.sweep(now)
        for table in self._ctx.tables.values():
            table.sweep(now)
        interval = self.cfg.engine.alert_interval
        self._last_alert = {k: t for k, t in self._last_alert.items() if now - t < interval}

    def tables(self) -> list:
        """Every bounded table, for sweeps and the evictions metric."""
        return [self.flows.syn, self.flows.est, self.bans.history, *self._ctx.tables.values()]

    # -- fragments and truncated packets (rare; reached by one check in process) --
    def _unusual(self, buf: bytes, pkt: Packet, now: float) -> int:
        """Cut short (NFQUEUE copies about 4016 bytes): counted, and dropped if
        truncated_policy says so. Fragments go to reassembly."""
        if pkt.truncated:
            self.stats.truncated += 1
            if self.cfg.engine.truncated_policy == "drop":
                return self._count(TRUNCATED_DROP)
        if pkt.fragment:
            return self._fragment(buf, pkt, now)
        return self._truncated(pkt, now)

    def _fragment(self, buf: bytes, pkt: Packet, now: float) -> int:
        """Fragments are held (accepted: the host cannot use them alone) until
        one completes its datagram, which is inspected whole; that fragment
        carries the datagram's verdict, so a dropped datagram never completes."""
        if self.bans.is_banned(pkt.src, now):
            return self._count(BANNED)
        status, datagram = self.defrag.feed(buf, now)
        if status == COMPLETE:
            verdict = self.process(datagram, now)
            if verdict == DROP:
                self.defrag.condemn(now)  # its late pieces are dropped too
            return verdict
        return self._count(FRAGMENT_HELD if status == HELD else FRAGMENT_DROP)

    def _truncated(self, pkt: Packet, now: float) -> int:
        """Accepted by policy: inspected as far as it goes, then its stream is
        given up (the missing bytes would desynchronise reassembly)."""
        verdict = self._inspect(pkt, now)
        if pkt.proto == PROTO_TCP:
            flow = self.flows.est.get((pkt.src, pkt.sport, pkt.dst, pkt.dport), now)
            if flow is not None and flow.http is not None:
                flow.http.dead = True
        return verdict
