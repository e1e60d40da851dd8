"""`ips-inline explain IP`: why is (or was) this address banned?

Reads the EVE log (streamed line by line; only lines naming the address are
parsed) and, on a running host, the state file. For each ban: when, origin,
detector, duration and escalation step (the source's nth ban), the alerts
that led to it (the offences counted toward it: time, detector, signature,
and the request line or the ports probed), how it ended; then whether the
address is banned now and until when. On a replay's output (`--eve FILE`,
no state file) "now" is the end of the log.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from .enforce.store import BanStore
from .errors import UserError
from .eve import detector_of, timestamp

MAX_BANS = 100  # bans shown per address (the latest); older ones are counted
MAX_ALERTS = 20  # alerts shown per ban (the latest that led to it)
MAX_OTHER = 5  # alerts that counted toward no ban, shown
MAX_DETECTORS = 64  # detector names tracked (a crafted log must not grow memory)


def explain(ip: str, eve_paths: list[str], state_path: str | None,
            now: float | None) -> dict[str, Any]:
    """The explanation as a dict (what `--json` prints). `now`: the time to
    judge "banned now" by; None means the end of the EVE log."""
    history = History()
    end = 0.0
    for path in eve_paths:
        reader = EveReader(path, ip)
        for when, record in reader:
            history.add(record, when)
        end = max(end, reader.end)
        history.unreadable += reader.unreadable
    entry = _state_entry(state_path, ip) if state_path is not None else None
    at = now if now is not None else end
    return history.result(ip, entry, at, now is None)


# -- reading the log ---------------------------------------------------------------------------
def _open(path: str) -> IO[str]:
    try:
        if path.endswith(".gz"):  # a rotated log
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by caller
    except OSError as exc:
        raise UserError(f"cannot read EVE log {path}: {exc.strerror or exc}") from None


class EveReader:
    """The records of one EVE log whose source is `ip`, as (time, record), in
    file order. Only lines containing the address are parsed; `end` is the
    time of the log's last record once iterated (or of the address's last,
    if the last line is cut short, as a crash can leave it). The first
    record must be EVE, else the file is not an EVE log (one-line error)."""

    def __init__(self, path: str, ip: str) -> None:
        self.path = path
        self.ip = ip
        self.end = 0.0
        self.unreadable = 0  # lines naming the address that are not JSON

    def __iter__(self) -> Iterator[tuple[float, dict[str, Any]]]:
        target = ipaddress.ip_address(self.ip)
        last = ""
        try:
            with _open(self.path) as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    if not last:
                        _check_first(self.path, line)
                    last = line
                    if self.ip not in line:  # cheap prefilter: most lines are other addresses
                        continue
                    record = _parse(line)
                    if record is None:
                        self.unreadable += 1
                    elif _source(record) == target:
                        when = _time(record.get("timestamp"))
                        self.end = max(self.end, when)
                        yield when, record
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"cannot read EVE log {self.path}: {exc}") from None
        record = _parse(last) if last else None
        if record is not None:
            self.end = max(self.end, _time(record.get("timestamp")))


def _check_first(path: str, line: str) -> None:
    record = _parse(line)
    if record is None or not isinstance(record.get("event_type"), str):
        raise UserError(f"{path} is not an EVE log (its first line is no EVE record)")


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _source(record: dict[str, Any]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(record.get("src_ip", ""))
    except ValueError:
        return None


def _time(text: Any) -> float:
    if not isinstance(text, str):
        return 0.0
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return 0.0


def _state_entry(path: str, ip: str) -> dict[str, Any] | None:
    entry = BanStore(path).load().get(ip)
    if entry is None:
        return None
    detector = str(entry.get("detector", "kernel"))
    try:
        return {"expires": float(entry["expires"]), "detector": detector,
                "count": int(entry.get("count", 1)),
                "origin": str(entry.get("origin", "manual" if detector == "manual" else "local"))}
    except (TypeError, ValueError):
        raise UserError(f"state file {path}: the entry of {ip} is unreadable: {entry}") from None


# -- what the records say ----------------------------------------------------------------------
class History:
    """One address's bans and alerts, bounded whatever the log's size."""

    def __init__(self) -> None:
        self.bans: deque[dict[str, Any]] = deque(maxlen=MAX_BANS)
        self.bans_seen = 0
        self.pending: dict[str, deque[dict[str, Any]]] = {}  # detector -> offences since a ban
        self.other: deque[dict[str, Any]] = deque(maxlen=MAX_OTHER)
        self.other_seen = 0
        self.unreadable = 0
        self.records = 0

    def add(self, record: dict[str, Any], when: float) -> None:
        kind = record.get("event_type")
        try:
            if kind == "alert":
                self._alert(record, when)
            elif kind == "ban":
                self._ban(record, when)
            elif kind == "unban":
                self._unban(record, when)
            else:
                return
        except (AttributeError, TypeError, ValueError, KeyError):  # a record of another shape
            self.unreadable += 1
            return
        self.records += 1

    def _alert(self, record: dict[str, Any], when: float) -> None:
        alert = describe_alert(record, when)
        if alert["offence"] is None:
            self.other.append(alert)
            self.other_seen += 1
            return
        name = alert["detector"]
        queue = self.pending.get(name)
        if queue is None:
            if len(self.pending) >= MAX_DETECTORS:
                return
            queue = self.pending[name] = deque(maxlen=MAX_ALERTS)
        if alert["offence"] == 1:
            queue.clear()  # a new offence window: what came before led to no ban
        queue.append(alert)

    def _ban(self, record: dict[str, Any], when: float) -> None:
        inner = record.get("ban") if isinstance(record.get("ban"), dict) else record
        name = detector_of(record) or "unknown"
        duration = int(inner.get("duration", 0))
        led = list(self.pending.pop(name, ()))
        ban = {"time": timestamp(when), "detector": name,
               "origin": str(inner.get("origin", "local")), "duration": duration,
               "count": int(inner.get("count", 1)), "ends": timestamp(when + duration),
               "ended": None, "flow_id": record.get("flow_id"), "alerts": led,
               "alerts_omitted": max(led[-1]["offence"] - len(led), 0) if led else 0,
               "_until": when + duration}
        self.bans.append(ban)
        self.bans_seen += 1

    def _unban(self, record: dict[str, Any], when: float) -> None:
        inner = record.get("unban") if isinstance(record.get("unban"), dict) else record
        for ban in reversed(self.bans):
            if ban["ended"] is None:
                ban["ended"] = {"time": timestamp(when), "reason": str(inner.get("reason", "?"))}
                ban["_until"] = min(ban["_until"], when)
                return

    def result(self, ip: str, entry: dict[str, Any] | None, at: float,
               log_clock: bool) -> dict[str, Any]:
        last = self.bans[-1] if self.bans else None
        if entry is not None:
            until = entry["expires"]
        elif last is not None and last["ended"] is None:
            until = last["_until"]
        else:
            until = 0.0
        return {
            "ip": ip,
            "seen": bool(self.records or entry),
            "as_of": timestamp(at) if at else None,
            "as_of_source": "end of the EVE log" if log_clock else "clock",
            "banned": until > at,
            "ban_ends": timestamp(until) if until > at else None,
            "state": None if entry is None else {**entry, "expires": timestamp(entry["expires"])},
            "bans": [{k: v for k, v in b.items() if not k.startswith("_")} for b in self.bans],
            "bans_omitted": self.bans_seen - len(self.bans),
            "pending": [{"detector": d, "alerts": list(q)} for d, q in self.pending.items() if q],
            "other_alerts": {"count": self.other_seen, "latest": list(self.other)},
            "unreadable_records": self.unreadable,  # not JSON, or not of the expected shape
        }


def describe_alert(record: dict[str, Any], when: float) -> dict[str, Any]:
    """An alert as explain shows it: what fired, and what was attacked."""
    alert = record["alert"]
    meta = alert.get("metadata") or {}
    offence = _first(meta.get("offences"))
    if offence is None and "detector" in record:  # the earlier shape: blocked ones counted
        offence = "0" if alert.get("action") == "blocked" else None
    ban_after = _first(meta.get("ban_after"))
    out: dict[str, Any] = {
        "time": timestamp(when), "detector": detector_of(record) or "unknown",
        "signature_id": alert.get("signature_id"), "signature": alert.get("signature"),
        "action": alert.get("action"), "offence": None if offence is None else int(offence),
        "ban_after": None if ban_after is None else int(ban_after),
        "proto": record.get("proto"), "dest_ip": record.get("dest_ip"),
        "flow_id": record.get("flow_id"),
    }
    http = record.get("http")
    if isinstance(http, dict):
        out["request"] = " ".join(str(http[k]) for k in ("http_method", "url", "protocol")
                                  if k in http)
        out["host"] = http.get("hostname")
    elif "icmp_type" in record:
        out["icmp_type"] = record["icmp_type"]
    else:
        out["dest_port"] = record.get("dest_port")
    if isinstance(meta.get("ports"), list):
        out["ports"] = [int(p) for p in meta["ports"]]
    return out


def _first(values: Any) -> str | None:
    return str(values[0]) if isinstance(values, list) and values else None


# -- printing ----------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> Iterable[str]:
    ip = result["ip"]
    if not result["seen"]:
        yield f"{ip}: never seen (no alert or ban in the EVE log, no entry in the state file)"
        return
    yield f"{ip}: {_now_line(result)}"
    if result["bans_omitted"]:
        yield f"({result['bans_omitted']} earlier bans not shown)"
    for ban in result["bans"]:
        yield ""
        yield (f"ban #{ban['count']} at {ban['time']}: {ban['detector']} (origin "
               f"{ban['origin']}), {_duration(ban['duration'])}, {_ending(ban)}")
        if not ban["alerts"]:
            yield "  no alert of it in the log (a ban by hand, from elsewhere, or the log rotated)"
        elif ban["alerts_omitted"]:
            yield f"  ({ban['alerts_omitted']} earlier offences not in the log or not shown)"
        for alert in ban["alerts"]:
            yield "  " + alert_line(alert)
    for group in result["pending"]:
        yield ""
        yield f"offences toward a ban by {group['detector']}, no ban yet:"
        for alert in group["alerts"]:
            yield "  " + alert_line(alert)
    other = result["other_alerts"]
    if other["count"]:
        yield ""
        yield f"{other['count']} alert(s) that count toward no ban (alert-only mode, "\
              "whitelisted, or no handshake seen); the latest:"
        for alert in other["latest"]:
            yield "  " + alert_line(alert)


def _now_line(result: dict[str, Any]) -> str:
    clock = f" (as of {result['as_of']}, {result['as_of_source']})" if result["as_of"] else ""
    state = result["state"]
    if result["banned"]:
        who = state or (result["bans"][-1] if result["bans"] else {})
        return (f"banned until {result['ban_ends']}{clock}: ban #{who.get('count', '?')} by "
                f"{who.get('detector', '?')} (origin {who.get('origin', '?')})")
    bans = len(result["bans"]) + result["bans_omitted"]
    return f"not banned now{clock}; {bans} ban(s) in the log"


def _ending(ban: dict[str, Any]) -> str:
    if ban["ended"] is not None:
        return f"ended {ban['ended']['time']} ({ban['ended']['reason']})"
    return f"ends {ban['ends']}"


def alert_line(alert: dict[str, Any]) -> str:
    step = f"offence {alert['offence']}/{alert['ban_after']}" if alert.get("ban_after") else ""
    what = ""
    if "request" in alert:
        what = f"{alert['request']!r}" + (f" host {alert['host']}" if alert.get("host") else "")
    elif "ports" in alert:
        what = f"ports probed: {_ports(alert['ports'])}"
    elif "icmp_type" in alert:
        what = f"ICMP type {alert['icmp_type']}"
    elif alert.get("dest_port") is not None:
        what = f"{alert['proto']} to port {alert['dest_port']}"
    parts = [alert["time"], alert["detector"], f"[{alert['signature_id']}] {alert['signature']}",
             what, step, alert.get("action") or ""]
    return "  ".join(p for p in parts if p)


def _ports(ports: list[int]) -> str:
    shown = ",".join(map(str, ports[:16]))
    return shown + (f",... ({len(ports)})" if len(ports) > 16 else f" ({len(ports)})")


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min ({seconds} s)"
    return f"{seconds / 3600:.1f} h ({seconds} s)"


def main(ip: str, eve_paths: list[str], state_path: str | None, as_json: bool,
         now: float | None, out: IO[str]) -> int:
    result = explain(ip, eve_paths, state_path, now)
    if as_json:
        out.write(json.dumps(result, indent=1) + "\n")
    else:
        out.write("\n".join(render(result)) + "\n")
    return 0
