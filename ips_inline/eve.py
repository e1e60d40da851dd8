"""EVE JSON records, one object per line, in Suricata's shape, so that the
tools SOCs already run on Suricata's eve.json (Filebeat's suricata module,
Elastic's integration, jq recipes) read them.

Alerts are valid against Suricata's own schema (7.0: etc/schema.json): the
detector's name and the other ips-inline facts go to `alert.metadata`, a
dict of string lists. Every other record is `timestamp`, `event_type` and
one object named after its type (`ban`, `unban`, `alert_suppressed`,
`stats`), as Suricata's records are; Suricata's schema does not know those
objects and allows no unknown top-level key, so those records are valid
against it only without their object (README, "EVE output").
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from .detectors.base import Signature
from .flowid import community_id, flow_id
from .packet.decode import PROTO_ICMP, PROTO_ICMP6, PROTO_NAMES, Packet, format_ip

if TYPE_CHECKING:
    from .http.stream import HttpRequest
    from .packet.flows import Flow

log = logging.getLogger(__name__)
WRITE_ERROR_LOG_INTERVAL = 60.0  # seconds between log lines about failed EVE writes
PKT_SRC = "wire/pcap"  # what Suricata writes for packets from a capture, live or from a file
HTTP_FIELD_MAX = 1024  # characters of a URL, host or user agent kept (bounds the log)
# The packet an alert was written for, its flow and time: the ban that alert
# causes (in the same engine step) carries the same connection.
Cause = tuple[Packet, "Flow | None", float]
# Suricata's payload_printable (util-print.c PrintStringsToBuffer): printable
# ASCII, CR and LF kept, every other byte a dot.
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F or b in (0x0A, 0x0D) else 0x2E for b in range(256))


class EventSink(Protocol):
    def wants(self, event_type: str) -> bool:
        """False if a record of this type would be dropped: the engine then
        skips building it (a flood of alerts past the budget costs nothing)."""
        ...

    def emit(self, record: dict[str, Any]) -> None: ...


def timestamp(now: float) -> str:
    """Suricata's format: 2026-11-27T14:36:47.123456+0000."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def printable(data: bytes) -> str:
    return data.translate(_PRINTABLE).decode("ascii")


def connection(pkt: Packet, flow: Flow | None) -> tuple[int, dict[str, Any]]:
    """flow_id, and the record's 5-tuple fields as Suricata names them (ICMP:
    type and code instead of ports) with the Community ID."""
    proto = pkt.proto
    fields: dict[str, Any] = {"src_ip": pkt.src_ip}
    if proto in (PROTO_ICMP, PROTO_ICMP6):
        sport, dport = pkt.icmp_type, getattr(pkt, "icmp_code", 0)  # set by decode() on ICMP
        fields.update(dest_ip=pkt.dst_ip, proto=PROTO_NAMES[proto])
        if sport >= 0:  # a header was decoded (not a later fragment)
            fields.update(icmp_type=sport, icmp_code=dport)
    else:
        sport, dport = pkt.sport, pkt.dport
        fields.update(src_port=sport, dest_ip=pkt.dst_ip, dest_port=dport,
                      proto=PROTO_NAMES.get(proto, str(proto)))
    start = flow.start if flow is not None else None
    fid = flow_id(proto, pkt.src, pkt.dst, max(sport, 0), max(dport, 0), start)
    if sport >= 0:
        fields["community_id"] = community_id(proto, pkt.src, pkt.dst, sport, dport)
    return fid, fields


def alert_record(pkt: Packet, detector: str, sig: Signature, blocked: bool, now: float, *,
                 flow: Flow | None = None, request: HttpRequest | None = None,
                 meta: dict[str, list[str]] | None = None, iface: str | None = None,
                 payload_max: int = 0) -> dict[str, Any]:
    """An alert, valid against Suricata's schema. `meta` joins `detector` in
    alert.metadata; `request` adds the http object and, with payload_max > 0,
    payload_printable of that request (at most payload_max bytes)."""
    fid, conn = connection(pkt, flow)
    rec: dict[str, Any] = {"timestamp": timestamp(now), "flow_id": fid}
    if iface:
        rec["in_iface"] = iface
    rec["event_type"] = "alert"
    rec.update(conn)
    rec["pkt_src"] = PKT_SRC
    rec["alert"] = {
        "action": "blocked" if blocked else "allowed",
        "gid": sig.gid,
        "signature_id": sig.sid,
        "rev": sig.rev,
        "signature": sig.msg,
        "category": sig.category,
        "severity": sig.severity,
        "metadata": {**{k: list(v) for k, v in sig.metadata}, "detector": [detector],
                     **(meta or {})},
    }
    if request is not None:
        rec["app_proto"] = "http"
        rec["http"] = http_fields(request, blocked)
        if payload_max > 0:
            rec["payload_printable"] = request_printable(request, payload_max)
    return rec


def http_fields(req: HttpRequest, blocked: bool) -> dict[str, Any]:
    """Suricata's http object for a request. `length` is the response's
    length in Suricata: 0 when the request was blocked (no response can
    come); unknown, so left out, when it passed (responses are not read)."""
    out: dict[str, Any] = {}
    host, port = _host(req)
    if host:
        out["hostname"] = host[:HTTP_FIELD_MAX]
    if port is not None:
        out["http_port"] = port
    out["url"] = req.target[:HTTP_FIELD_MAX]
    agent = _header(req, "user-agent")
    if agent is not None:
        out["http_user_agent"] = agent[:HTTP_FIELD_MAX]
    out["http_method"] = req.method[:HTTP_FIELD_MAX]
    protocol = _protocol(req.head)
    if protocol:
        out["protocol"] = protocol
    if blocked:
        out["length"] = 0
    return out


def request_printable(req: HttpRequest, limit: int) -> str:
    """The request as received (head, blank line, body), at most `limit` bytes."""
    data = req.head[:limit]
    if req.body and len(data) < limit:
        data = (data + b"\r\n\r\n" + req.body)[:limit]
    return printable(data)


def _header(req: HttpRequest, name: str) -> str | None:
    return next((value for key, value in req.headers if key == name), None)


def _host(req: HttpRequest) -> tuple[str, int | None]:
    """Host and port as a server takes them: from an absolute-form target,
    else from the Host header; lower case, as libhtp gives Suricata."""
    target = req.target
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        authority = authority.rpartition("@")[2]
    else:
        authority = _header(req, "host") or ""
    if authority.startswith("["):  # an IPv6 literal
        name, _, tail = authority[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif authority.count(":") == 1:
        name, _, port_text = authority.partition(":")
    else:
        name, port_text = authority, ""
    port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else None
    return name.strip().lower(), port if port is not None and port <= 65535 else None


def _protocol(head: bytes) -> str:
    """HTTP/1.1 from the request line ("" for HTTP/0.9 or none)."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r \t")
    version = line.rpartition(b" ")[2]
    return version.decode("latin-1") if version.startswith(b"HTTP/") and len(version) <= 10 \
        else ""


def ban_record(src: bytes, detector: str, duration: int, count: int, now: float, *,
               origin: str = "local", cause: Cause | None = None) -> dict[str, Any]:
    """A ban; with the alert that caused it (`cause`, same source and time),
    it carries that packet's connection: flow_id, 5-tuple, community_id."""
    rec: dict[str, Any] = {"timestamp": timestamp(now)}
    conn = None
    if cause is not None and cause[0].src == src and cause[2] == now:
        rec["flow_id"], conn = connection(cause[0], cause[1])
    rec["event_type"] = "ban"
    rec.update(conn or {"src_ip": format_ip(src)})
    rec["ban"] = {"detector": detector, "duration": duration, "count": count, "origin": origin}
    return rec


def unban_record(src: bytes, reason: str, now: float) -> dict[str, Any]:
    return {"timestamp": timestamp(now), "event_type": "unban", "src_ip": format_ip(src),
            "unban": {"reason": reason}}


def suppressed_record(count: int, now: float) -> dict[str, Any]:
    return {"timestamp": timestamp(now), "event_type": "alert_suppressed",
            "alert_suppressed": {"count": count}}


def detector_of(record: dict[str, Any]) -> str | None:
    """The detector an alert or ban record names; also in the earlier shape,
    a top-level `detector`, so logs from before the change still read."""
    kind = record.get("event_type")
    inner = record.get(kind) if kind in ("alert", "ban") else None
    if isinstance(inner, dict):
        meta = inner.get("metadata")
        names = meta.get("detector") if kind == "alert" and isinstance(meta, dict) else None
        if isinstance(names, list) and names:
            return str(names[0])
        if kind == "ban" and "detector" in inner:
            return str(inner["detector"])
    old = record.get("detector")
    return None if old is None else str(old)


class InterfaceNames:
    """Interface index -> name for EVE's in_iface (NetfilterQueue gives a
    packet's `indev` index). if_indextoname is a system call: names are kept,
    at most `limit` of them. Never raises: an unknown index gives None."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._names: dict[int, str] = {}

    def name(self, index: int) -> str | None:
        name = self._names.get(index)
        if name is None and index > 0:
            try:
                name = socket.if_indextoname(index)
            except (OSError, OverflowError):
                return None
            if len(self._names) >= self.limit:
                self._names.clear()
            self._names[index] = name
        return name


class JsonLines:
    """Writes each record as one JSON line and flushes, so `tail -f` and log
    shippers see it at once. A failed write (disk full, a dead mount) loses
    that record, counted in `failed` and logged once a minute: it must never
    raise into the engine, whose verdict on the packet stands."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.failed = 0
        self._next_log = 0.0

    def wants(self, event_type: str) -> bool:
        return True

    def emit(self, record: dict[str, Any]) -> None:
        try:
            self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.failed += 1
            now = self.clock()
            if now >= self._next_log:
                self._next_log = now + WRITE_ERROR_LOG_INTERVAL
                log.error("EVE log write failed, %d record(s) lost so far: %s", self.failed, exc)


class AlertBudget:
    """At most `per_second` alert records a second pass to `sink`; the rest are
    counted and reported in one `alert_suppressed` record per second. A flood
    of spoofed sources, each a new alert, would otherwise fill the disk
    (measured: 360 bytes per packet). Other records always pass; every alert
    is still counted in ips_inline_alerts_total. Live only: replay logs all.
    The engine asks `wants` first, so alerts past the budget are not even built."""

    def __init__(self, sink: EventSink, per_second: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.sink = sink
        self.per_second = per_second
        self.clock = clock
        self.start = 0.0
        self.passed = 0
        self.suppressed = 0

    def wants(self, event_type: str) -> bool:
        if event_type != "alert":
            return True
        self.tick()
        if self.passed < self.per_second:
            return True
        self.suppressed += 1
        return False

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("event_type") != "alert":
            self.sink.emit(record)
            return
        self.tick()
        if self.passed < self.per_second:
            self.passed += 1
            self.sink.emit(record)
        else:
            self.suppressed += 1

    def tick(self) -> None:
        """Start a new second if one has passed (also called when idle, so the
        last suppressed count is reported without waiting for a new alert)."""
        now = self.clock()
        if now - self.start < 1.0:
            return
        if self.suppressed:
            self.sink.emit(suppressed_record(self.suppressed, now))
        self.start, self.passed, self.suppressed = now, 0, 0


class Collect:
    """A sink that keeps records in memory (tests, replay summaries)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def wants(self, event_type: str) -> bool:
        return True

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)
