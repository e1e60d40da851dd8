"""What CrowdSec work survives a restart, in the "crowdsec" section of the
state file (enforce/store.py, same lock and atomic write as the bans):

    pending  the bounded push queue: {"seq", "op": "ban"|"unban", "ip", ...}
             in order; workers, `ips-inline ban/unban` and the daemon append,
             only the agent removes (by seq, so appends meanwhile stay)
    seq      the last sequence number given out
    dropped  pushes lost because the queue was full (a counter)
    pushed   ip -> [{"alert": id, "decisions": [ids], "until": epoch}]: what
             `unban` must delete in LAPI, and our own decisions in the stream
    ranges   CIDR -> {"expires", "scenario", "origin"}: Range decisions applied

Pulled Ip decisions live with the other bans (store "bans"), marked with
"origin": "crowdsec:<origin>", so restore, `bans` and `unban` see them.

The file may have been edited or damaged: everything read from it is checked,
and what does not fit is dropped.
"""

from __future__ import annotations

import math
from typing import Any

from ..enforce.addr import parse_ip, parse_network

SECTION = "crowdsec"
MAX_PUSHED = 65536  # addresses whose pushed decisions are remembered
MAX_TEXT = 256


def origin_of(entry: dict[str, Any]) -> str:
    """local, manual or crowdsec:<origin>, for a ban entry of the store."""
    origin = entry.get("origin")
    if isinstance(origin, str) and origin.startswith("crowdsec:"):
        return origin
    return "manual" if entry.get("detector") == "manual" else "local"


def pulled(entry: dict[str, Any]) -> bool:
    return origin_of(entry).startswith("crowdsec:")


# -- the push queue -------------------------------------------------------------
def enqueue(section: dict[str, Any], items: list[dict[str, Any]], limit: int) -> int:
    """Append items (each gets a seq); beyond `limit` the oldest are dropped
    and counted. Returns how many were dropped."""
    queue = pending(section)
    seq = _int(section.get("seq"))
    for item in items:
        seq += 1
        queue.append({**item, "seq": seq})
    over = max(0, len(queue) - limit)
    section.update(pending=queue[over:], seq=seq)
    count_dropped(section, over)
    return over


def count_dropped(section: dict[str, Any], n: int) -> None:
    section["dropped"] = _int(section.get("dropped")) + n


def dropped(section: dict[str, Any]) -> int:
    return _int(section.get("dropped"))


def cancel_bans(section: dict[str, Any], ip: str) -> int:
    """Remove the pushes of `ip` not sent yet (an unban overtook them)."""
    queue = pending(section)
    kept = [i for i in queue if not (i["op"] == "ban" and i["ip"] == ip)]
    section["pending"] = kept
    return len(queue) - len(kept)


def remove(section: dict[str, Any], seqs: set[int]) -> None:
    section["pending"] = [i for i in pending(section) if i["seq"] not in seqs]


def pending(section: dict[str, Any]) -> list[dict[str, Any]]:
    raw = section.get("pending")
    return [i for i in raw if _item_ok(i)] if isinstance(raw, list) else []


def _item_ok(item: object) -> bool:
    if not isinstance(item, dict) or item.get("op") not in ("ban", "unban"):
        return False
    if not isinstance(item.get("seq"), int) or not _ip_ok(item.get("ip")):
        return False
    if item["op"] == "unban":
        return True
    return (_number(item.get("until")) and _number(item.get("duration"))
            and isinstance(item.get("count"), int) and _text(item.get("detector"))
            and _text(item.get("signature")) and _number(item.get("at")))


# -- what we pushed ---------------------------------------------------------------
def pushed(section: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    raw = section.get("pushed")
    if not isinstance(raw, dict):
        return {}
    out = {}
    for ip, records in raw.items():
        good = [r for r in records if _record_ok(r)] if isinstance(records, list) else []
        if good and _ip_ok(ip):
            out[ip] = good
    return out


def _record_ok(rec: object) -> bool:
    return (isinstance(rec, dict) and isinstance(rec.get("alert"), str)
            and rec["alert"].isdigit() and isinstance(rec.get("decisions"), list)
            and all(isinstance(d, int) for d in rec["decisions"]) and _number(rec.get("until")))


def own_ids(section: dict[str, Any]) -> set[int]:
    return {d for recs in pushed(section).values() for r in recs for d in r["decisions"]}


def prune_pushed(records: dict[str, list[dict[str, Any]]], now: float) -> None:
    """Forget ended decisions; keep at most MAX_PUSHED addresses (the longest)."""
    for ip in list(records):
        records[ip] = [r for r in records[ip] if r["until"] > now]
        if not records[ip]:
            del records[ip]
    if len(records) > MAX_PUSHED:
        ends = sorted(records, key=lambda ip: max(r["until"] for r in records[ip]))
        for ip in ends[:len(records) - MAX_PUSHED]:
            del records[ip]


# -- Range decisions applied ------------------------------------------------------
def ranges(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = section.get("ranges")
    if not isinstance(raw, dict):
        return {}
    return {cidr: e for cidr, e in raw.items()
            if _net_ok(cidr) and isinstance(e, dict) and _number(e.get("expires"))}


def _ip_ok(value: object) -> bool:
    try:
        return isinstance(value, str) and parse_ip(value) == value
    except ValueError:
        return False


def _net_ok(value: object) -> bool:
    try:
        return isinstance(value, str) and parse_network(value) == value
    except ValueError:
        return False


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
