"""The engine: one packet in, one verdict out.

    decode -> conntrack state -> ban check -> flow state -> detectors (by
    protocol) -> HTTP requests -> payload detectors -> verdict ->
    offences/bans (enforcer)

Alerts and bans go to an EventSink on the side; counters live in `Stats` and
are read by metrics at scrape time. The engine never reads the clock: live
passes wall time, replay passes capture time, so a replay is deterministic.
One engine per worker process; it is not thread-safe and needs no locks.

The kernel's conntrack state comes with each live packet (packet/conntrack.py);
replay infers it. It decides what a forger can and cannot make the engine
believe: floods and scans count only packets that open or probe (NEW,
INVALID), never replies; payload offences count toward a ban only on a
connection whose handshake the kernel proved; INVALID packets (which the host
would not take either) are dropped after the scan detectors counted them.
Where the engine cannot follow a connection's stream (framing it cannot
parse, a bound, a desync, an exception), it fails closed for that connection
(`engine.stream_error_policy`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from .bans import BanManager, Whitelist
from .config import Config, rule_variables
from .detectors import Context, Detector, build, load_rules
from .detectors.base import Signature
from .detectors.rules import RulesHttp
from .eve import Cause, EventSink, alert_record, ban_record, unban_record
from .http.clean import CleanValues
from .http.request import inert
from .http.stream import END, HEAD, NOT_HTTP, HttpError, HttpRequest, HttpStream
from .packet import conntrack as ct
from .packet.decode import (
    MALFORMED_REASONS,
    PROTO_TCP,
    PROTO_UDP,
    SYN,
    URG,
    Malformed,
    Packet,
    decode,
)
from .packet.defrag import COMPLETE, HELD, Defrag
from .packet.flows import Flow, FlowTable, StreamError, StreamOverflow

if TYPE_CHECKING:
    from .rules import RuleSet

log = logging.getLogger(__name__)

# Verdicts. BYPASS accepts and asks the kernel to stop queueing the connection;
# BYPASS_ACKS to stop queueing its segments without payload; BLOCK drops and
# asks the kernel to drop the rest of the connection itself.
DROP, ACCEPT, BYPASS, BYPASS_ACKS, BLOCK = 0, 1, 2, 3, 4
# (verdict, reason) label pairs; Stats.verdicts is indexed by these codes, and
# a request's worst outcome is their max, so the order matters.
REASONS = (("accept", "clean"), ("accept", "whitelist"), ("accept", "alert_only"),
           ("accept", "malformed"), ("accept", "error"), ("drop", "detector"),
           ("drop", "banned"), ("drop", "malformed"), ("drop", "error"), ("accept", "bypass"),
           ("drop", "stream_conflict"), ("drop", "stream_overflow"), ("accept", "fragment_held"),
           ("drop", "fragment"), ("drop", "truncated"), ("drop", "stream_error"),
           ("drop", "invalid"), ("accept", "invalid"), ("accept", "truncated"))
(CLEAN, WHITELISTED, ALERT_ONLY, MALFORMED_OK, ERROR_OK, DETECTED, BANNED,
 MALFORMED_DROP, ERROR_DROP, BYPASSED, STREAM_CONFLICT, STREAM_OVERFLOW, FRAGMENT_HELD,
 FRAGMENT_DROP, TRUNCATED_DROP, STREAM_ERROR, INVALID_DROP, INVALID_OK,
 TRUNCATED_OK) = range(len(REASONS))
_VERDICT = tuple(BYPASS if reason == "bypass" else ACCEPT if verdict == "accept" else DROP
                 for verdict, reason in REASONS)
ERROR_LOG_INTERVAL = 10.0  # seconds between tracebacks of engine errors
SWEEP_INTERVAL = 5.0  # seconds of engine time between expiry sweeps
_TCP_FLAG_BITS = 0x3F  # FIN..URG: what the TCP detectors look at (not ECE/CWR)
_TCP_FLAG_COMBOS = _TCP_FLAG_BITS + 1
# Why a stream could not be followed (besides HttpError reasons): metrics label values.
STREAM_ERRORS = ("lost", "mid_request", "urgent", "truncated", "exception", "head_too_long",
                 "desync",
                 "bad_length", "conflicting_length", "length_and_chunked",
                 "bad_transfer_encoding", "chunk_size", "chunk_framing", "chunk_line",
                 "inspect_budget", "http2_cleartext", "proxy_header")


class Stats:
    """Plain counters: cheap to bump per packet, read by metrics when scraped."""

    def __init__(self) -> None:
        self.verdicts = [0] * len(REASONS)
        self.alerts: Counter[str] = Counter()
        self.bans: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter(dict.fromkeys(MALFORMED_REASONS, 0))
        self.stream_errors: Counter[str] = Counter(dict.fromkeys(STREAM_ERRORS, 0))
        self.bodies: Counter[str] = Counter()  # request bodies read, by how (http/bodies.py)
        self.body_skipped = 0  # body bytes not fed to detectors (binary file contents)
        self.exceptions = 0
        self.truncated = 0  # shorter than their IP header says (NFQUEUE copy limit)

    @property
    def packets(self) -> int:
        return sum(self.verdicts)

    def count(self, verdict: str) -> int:
        return sum(n for n, (v, _r) in zip(self.verdicts, REASONS, strict=True) if v == verdict)


class Engine:
    def __init__(self, cfg: Config, bans: BanManager, sink: EventSink,
                 ruleset: RuleSet | None = None) -> None:
        self.sink = sink
        self.stats = Stats()
        self._verdicts = self.stats.verdicts  # the same list: one lookup less per packet
        self.bans = bans
        self._banned = bans.active  # the same dict, for a cheap membership test
        bans.on_ban = self._on_ban
        bans.on_unban = self._on_unban
        self.flows = FlowTable(cfg.engine.max_flows, cfg.engine.flow_ttl, cfg.engine.half_open_ttl)
        self.infer = ct.CtInfer(cfg.engine.max_flows, cfg.engine.flow_ttl)
        self._last_alert: dict[tuple[bytes, str], float] = {}
        self._next_sweep = 0.0
        self._ctx = Context(cfg.engine, self.flows)  # replaced by reconfigure, tables kept
        self._next_error_log = 0.0
        self.defrag = Defrag()
        # Live: the input interface of the packet being judged (EVE in_iface);
        # called only when an alert record is written.
        self.get_iface: Callable[[], str | None] | None = None
        self._cause: Cause | None = None  # the last alert's packet: its ban names the flow
        self.ruleset: RuleSet | None = None
        self.reconfigure(cfg, ruleset)

    def reconfigure(self, cfg: Config, ruleset: RuleSet | None = None) -> None:
        """Apply a new config (SIGHUP). Connections, bans and counters stay;
        detectors start afresh with their new thresholds. `ruleset`: the rules
        already loaded (the daemon loads them first, to keep the old ones if a
        file is broken); None loads them here (RuleFileError if one is broken)."""
        if ruleset is None:
            ruleset = load_rules(cfg, self.ruleset)
        self.ruleset = ruleset
        self.cfg = cfg
        eng = cfg.engine
        self.bans.cfg = cfg.bans
        self.whitelist = self.bans.whitelist = Whitelist(eng.whitelist)
        self._ctx = Context(eng, self.flows, self._ctx.tables)
        self.detectors = build(cfg, self._ctx, ruleset)
        for det in self.detectors:
            self.stats.alerts.setdefault(det.name, 0)
        self._on_connection = tuple(d for d in self.detectors
                                    if getattr(d, "on_connection", False))
        rules_http = [d for d in self.detectors if isinstance(d, RulesHttp)]
        self._rules_http: RulesHttp | None = rules_http[0] if rules_http else None
        packet_dets = [d for d in self.detectors if not d.payload and d not in self._on_connection]
        self._dispatch: dict[int, tuple[Detector, ...]] = {}  # other protocols
        for det in packet_dets:
            for proto in det.protocols:
                if proto != PROTO_TCP:
                    self._dispatch[proto] = (*self._dispatch.get(proto, ()), det)
        # TCP by flags (FIN..URG): a segment meets only detectors that can fire on it.
        self._tcp: tuple[tuple[Detector, ...], ...] = tuple(
            tuple(d for d in packet_dets if PROTO_TCP in d.protocols and d.fires_on(flags))
            for flags in range(_TCP_FLAG_COMBOS))
        self._payload = tuple(d for d in self.detectors if d.payload and d is not self._rules_http)
        self._clean = CleanValues()  # new rules: what was clean must be looked at again
        self._white: dict[bytes, bool] = {}  # source -> whitelisted (a cache, bounded)
        self._http_ports = rule_variables(cfg.rules).port("$HTTP_PORTS")
        self._bypass_after = eng.bypass_after_packets
        self._fail_closed = eng.stream_error_policy == "drop"
        self._drop_invalid = eng.invalid_policy == "drop"

    def process(self, buf: bytes, now: float, state: int = ct.UNKNOWN) -> int:
        """Verdict for one packet: DROP, ACCEPT, BYPASS, BYPASS_ACKS or BLOCK.
        `state` is the kernel's conntrack state (UNKNOWN: infer it). Never raises."""
        try:
            pkt = decode(buf)
        except Malformed as exc:
            return self._malformed(exc.reason)
        except Exception:  # a decoder bug must not take the daemon down
            return self._malformed("decode_error")
        try:
            if pkt.fragment or pkt.truncated:  # rare: one check keeps them off the fast path
                return self._unusual(buf, pkt, state, now)
            return self._inspect(pkt, state, now)
        except Exception:
            self._error(pkt, now)
            return self._verdict(self.cfg.engine.error_policy == "accept", ERROR_OK, ERROR_DROP)

    def _error(self, pkt: Packet, now: float) -> None:
        self.stats.exceptions += 1
        if now >= self._next_error_log:  # crafted packets must not flood the log
            self._next_error_log = now + ERROR_LOG_INTERVAL
            log.exception("engine error on a packet from %s (%d so far)", pkt.src_ip,
                          self.stats.exceptions)

    def _malformed(self, reason: str) -> int:
        self.stats.malformed[reason] += 1
        return self._verdict(self.cfg.engine.malformed_policy == "accept", MALFORMED_OK,
                             MALFORMED_DROP)

    def _verdict(self, accept: bool, if_accept: int, if_drop: int) -> int:
        self.stats.verdicts[if_accept if accept else if_drop] += 1
        return ACCEPT if accept else DROP

    def _inspect(self, pkt: Packet, state: int, now: float) -> int:
        if now >= self._next_sweep:  # expire(), inlined: this runs per packet
            self.sweep(now)
        white = self._white.get(pkt.src)
        if white is None:
            white = self._whitelisted(pkt.src)
        if white:  # as in the kernel, which accepts them before the queue
            self._verdicts[WHITELISTED] += 1
            return ACCEPT
        if pkt.src in self._banned and self.bans.is_banned(pkt.src, now):  # a dict hit first
            self._verdicts[BANNED] += 1
            return DROP
        if state == ct.UNKNOWN:
            state = self.infer.classify(pkt, now)
        pkt.ct = state
        if state == ct.INVALID:
            return self._invalid(pkt, now)
        if pkt.proto == PROTO_TCP:
            return self._segment(pkt, now)
        for det in self._dispatch.get(pkt.proto, ()):
            sig = det.inspect(pkt, None, now)
            if sig is not None:
                return self._count(self._hit(det, sig, pkt, None, now))
        self._verdicts[CLEAN] += 1
        return ACCEPT

    def _whitelisted(self, src: bytes) -> bool:
        if len(self._white) >= self.cfg.engine.max_sources:
            self._white.clear()
        white = self._white[src] = src in self.whitelist
        return white

    def _invalid(self, pkt: Packet, now: float) -> int:
        """The kernel found no sense in it (a scan probe, a forged or stale
        segment): scans count it, then it is dropped; it never touches
        connection state."""
        dets = self._tcp[pkt.flags & _TCP_FLAG_BITS] if pkt.proto == PROTO_TCP \
            else self._dispatch.get(pkt.proto, ())
        for det in dets:
            sig = det.inspect(pkt, None, now)
            if sig is not None:
                return self._count(self._hit(det, sig, pkt, None, now))
        return self._count(INVALID_DROP if self._drop_invalid else INVALID_OK)

    def _segment(self, pkt: Packet, now: float) -> int:
        """A TCP segment: connection state, the detectors that can fire on its
        flags, then the initiator's stream (HTTP) and bypass."""
        flow = self.flows.track(pkt, now)
        if flow is not None:
            if flow.blocked and flow.from_initiator(pkt):
                return self._count(STREAM_ERROR if flow.blocked != "detector" else DETECTED)
            if flow.bypassed == BYPASS or flow.bypassed == BYPASS_ACKS and not pkt.payload:
                return self._count(BYPASSED)  # live, the kernel no longer queues these
        for det in self._tcp[pkt.flags & _TCP_FLAG_BITS]:
            sig = det.inspect(pkt, flow, now)
            if sig is not None:
                return self._count(self._hit(det, sig, pkt, flow, now))
        if flow is not None and flow.fresh:  # its handshake just proven: a new connection
            flow.fresh = False
            for det in self._on_connection:
                sig = det.inspect(pkt, flow, now)
                if sig is not None:
                    return self._count(self._hit(det, sig, pkt, flow, now))
        if flow is None or flow.blocked:  # (a blocked connection's responder side)
            self._verdicts[CLEAN] += 1
            return ACCEPT
        code = CLEAN
        if pkt.payload and flow.from_initiator(pkt):
            code = self._stream(pkt, flow, now)
        flow.packets += 1
        if code == CLEAN:
            return self._maybe_bypass(flow)
        return self._blocked(flow) if code in (DETECTED, STREAM_ERROR) else self._count(code)

    def _count(self, code: int) -> int:
        self._verdicts[code] += 1
        return _VERDICT[code]

    def _blocked(self, flow: Flow) -> int:
        """The verdict for the segment that got its connection blocked: live,
        the kernel then drops the rest of the connection itself."""
        self._verdicts[STREAM_ERROR if flow.blocked != "detector" else DETECTED] += 1
        return BLOCK

    def _maybe_bypass(self, flow: Flow) -> int:
        """Bypass once nothing is left to inspect: a stream that is not HTTP
        (after bypass_after_packets), entirely; the segments without payload
        of a connection once its handshake is done, since data segments,
        where requests travel, stay queued."""
        http = flow.http
        after = self._bypass_after
        if after and flow.packets >= after and http is not None and http.dead:
            flow.bypassed = BYPASS
            flow.release()
            self._verdicts[BYPASSED] += 1
            return BYPASS
        if flow.bypassed or not self.cfg.engine.bypass_acks or not flow.handshake:
            self._verdicts[CLEAN] += 1
            return ACCEPT
        flow.bypassed = BYPASS_ACKS
        self._verdicts[BYPASSED] += 1
        return BYPASS_ACKS

    def _stream(self, pkt: Packet, flow: Flow, now: float) -> int:
        """Data from the initiator: reassemble, cut HTTP requests, inspect.
        Whatever goes wrong in here fails closed for this connection."""
        http = flow.http
        if http is not None and http.dead:
            return CLEAN
        try:
            return self._inspect_stream(pkt, flow, now)
        except StreamError as exc:  # overlap with other bytes, or too far out of order
            return REASONS.index(("drop", exc.reason))
        except HttpError as err:  # another name: compiled, `exc` has the type above
            return self._stream_error(flow, err.reason)
        except Exception:
            self._error(pkt, now)
            return self._stream_error(flow, "exception")

    def _stream_error(self, flow: Flow, reason: str) -> int:
        self.stats.stream_errors[reason] += 1
        if not self._fail_closed:  # policy "accept": stop inspecting, let it through
            if flow.http is None:
                flow.http = self._new_stream(flow)
            flow.http.state = NOT_HTTP
            flow.release()
            return CLEAN
        flow.blocked = reason
        flow.release()
        return STREAM_ERROR

    def _inspect_stream(self, pkt: Packet, flow: Flow, now: float) -> int:
        if flow.lost:
            raise HttpError("lost")  # forgotten mid-request or blocked: cannot follow
        if pkt.truncated:
            raise HttpError("truncated")  # bytes the host got and the engine did not
        if pkt.flags & URG:
            # Linux takes the urgent byte out of the stream: bytes the engine
            # would read in another order than the application. No browser
            # sends it.
            raise HttpError("urgent")
        payload = pkt.payload
        if not flow.mem.room(2 * len(payload)):
            raise StreamOverflow  # the memory budget is spent: the sender retransmits
        seq = (pkt.seq + 1) & 0xFFFFFFFF if pkt.flags & SYN else pkt.seq  # data on a SYN (TFO)
        data = flow.reassemble(seq, payload)
        if not data:
            return CLEAN
        http = flow.http
        if http is None:
            http = flow.http = self._new_stream(flow)
        code = CLEAN
        rules = self._rules_http
        for kind, request, parts in http.feed(data):
            if kind == END:
                if request.body_kind:
                    self.stats.bodies[request.body_kind] += 1
                    self.stats.body_skipped += request.body_skipped
                if rules is not None and request.length:
                    code = max(code, self._rules_unit(rules, "body", request, pkt, flow, now))
            else:
                if parts:
                    code = max(code, self._inspect_request(request, parts, pkt, flow, now))
                if kind == HEAD and rules is not None and code != DETECTED:
                    code = max(code, self._rules_unit(rules, "head", request, pkt, flow, now))
            if code == DETECTED:
                return code
        if http.error is not None:
            raise http.error  # after inspecting what came before it
        if http.dead:
            flow.release()  # not HTTP: no buffer is needed any more
        return code

    def _new_stream(self, flow: Flow) -> HttpStream:
        eng = self.cfg.engine
        return HttpStream(eng.http_max_head, eng.http_max_body, flow.mem,
                          max_inspect=eng.http_max_inspect, picked=flow.picked,
                          h2_ok=eng.http2_cleartext == "accept",
                          http_port=flow.picked and self._http_ports.match(flow.dport))

    def _inspect_request(self, request: HttpRequest, parts: list, pkt: Packet, flow: Flow,
                         now: float) -> int:
        parts = self._clean.unseen([p for p in parts if not inert(p[0])])
        if not parts:
            return CLEAN
        request.select(parts)
        flow.request = request
        try:
            for det in self._payload:
                sig = det.inspect(pkt, flow, now)
                if sig is not None:
                    return self._hit(det, sig, pkt, flow, now)  # one alert per unit
        finally:
            flow.request = None
        self._clean.add(parts)  # every detector looked at every value
        return CLEAN

    def _rules_unit(self, rules: RulesHttp, kind: str, request: HttpRequest, pkt: Packet,
                    flow: Flow, now: float) -> int:
        """The http rules on a request's head (kind "head") or at its end ("body")."""
        sigs = rules.inspect_unit(kind, request, pkt, flow, now)
        if sigs is None:
            return CLEAN
        flow.request = request
        try:
            return self._hit(rules, sigs, pkt, flow, now)
        finally:
            flow.request = None

    def _hit(self, det: Detector, sig: Signature | tuple[Signature, ...], pkt: Packet,
             flow: Flow | None, now: float) -> int:
        """Alert, and unless alert-only: drop and count an offence (whitelisted
        sources never get here). A detector may name several signatures at
        once (rules: each alert is logged, a drop among them drops). Returns
        the verdict reason code."""
        name = det.name
        sigs = sig if isinstance(sig, tuple) else (sig,)
        block = det.cfg.mode == "block" and any(s.action != "alert" for s in sigs)
        proven = flow is not None and flow.handshake
        # Payload attacks count toward a ban only on a connection whose
        # handshake the kernel proved: a forger's packets never ban.
        counts = block and det.cfg.ban_after > 0 and (not det.proof_required or proven)
        self.stats.alerts[name] += 1
        for one in sigs:
            if one.log:
                self._alert(det, one, pkt, flow, block and one.action != "alert",
                            det.cfg.ban_after if counts else 0, now)
        if not block:
            return ALERT_ONLY
        if det.payload:
            assert flow is not None
            flow.blocked = "detector"  # the rest of this connection carries the attack
            flow.release()
        if counts:
            self.bans.offence(pkt.src, name, det.cfg.ban_after, now, proven=proven)
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
        self.infer.sweep(now)
        self.defrag.sweep(now)
        self.bans.sweep(now)
        for table in self._ctx.tables.values():
            table.sweep(now)
        interval = self.cfg.engine.alert_interval
        self._last_alert = {k: t for k, t in self._last_alert.items() if now - t < interval}

    def tables(self) -> list:
        """Every bounded table, for sweeps and the evictions metric."""
        extra = [self.ruleset.thresholds] if self.ruleset is not None else []
        return [*self.flows.tables(), self.bans.history, *self._ctx.tables.values(), *extra]

    # -- fragments and truncated packets (rare; reached by one check in process) --
    def _unusual(self, buf: bytes, pkt: Packet, state: int, now: float) -> int:
        """Cut short (a capture's snap length; live, NFQUEUE's copy limit):
        counted, and dropped if truncated_policy says so. Fragments go to
        reassembly."""
        if pkt.truncated:
            self.stats.truncated += 1
            if self.cfg.engine.truncated_policy == "drop":
                return self._count(TRUNCATED_DROP)
        if pkt.fragment:
            return self._fragment(buf, pkt, state, now)
        return self._truncated(pkt, state, now)

    def _fragment(self, buf: bytes, pkt: Packet, state: int, now: float) -> int:
        """Fragments are held (accepted: the host cannot use them alone) until
        one completes its datagram, which is inspected whole; that fragment
        carries the datagram's verdict, so a dropped datagram never completes."""
        if self.bans.is_banned(pkt.src, now):
            return self._count(BANNED)
        status, datagram = self.defrag.feed(buf, now)
        if status == COMPLETE:
            verdict = self.process(datagram, now, state)
            if verdict in (DROP, BLOCK):
                self.defrag.condemn(now)  # its late pieces are dropped too
            return verdict
        return self._count(FRAGMENT_HELD if status == HELD else FRAGMENT_DROP)

    def _truncated(self, pkt: Packet, state: int, now: float) -> int:
        """Accepted by policy: inspected as far as it goes. A connection whose
        stream lost bytes cannot be followed: _inspect_stream fails it closed.
        Cut inside its TCP or UDP header, there is nothing to inspect."""
        if pkt.proto in (PROTO_TCP, PROTO_UDP) and not pkt.sport and not pkt.dport:
            return self._count(TRUNCATED_OK)
        return self._inspect(pkt, state, now)
