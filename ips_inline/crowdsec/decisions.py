"""LAPI's decision stream, checked field by field before anything reaches the kernel.

`GET /v1/decisions/stream` answers {"new": [...] | null, "deleted": [...] | null};
each decision has id, origin, type, scope, value, duration and scenario. An
answer of the wrong shape is rejected whole (BadStream); one bad decision is
rejected alone and counted by reason, so one garbage entry cannot hide the
others and nothing in it can raise further on.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from ..enforce.addr import parse_ip, parse_network
from .duration import parse_go_duration

IP, RANGE = "Ip", "Range"
_SCOPES = {"ip": IP, "range": RANGE}
_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_TEXT = 128  # scenario text kept (state file, `ips-inline bans`)

# Counted reasons a decision was not enforced.
REJECT_REASONS = ("invalid", "not_ban", "scope", "whitelisted", "too_many", "set_full",
                  "netlink")


class BadStream(ValueError):
    """The answer as a whole is not a decision stream."""


@dataclass(frozen=True, slots=True)
class Decision:
    id: int
    scope: str  # IP or RANGE
    value: str  # canonical address or CIDR
    type: str
    origin: str  # safe as a metric label
    scenario: str  # printable, at most MAX_TEXT characters
    remaining: float  # seconds; negative once expired

    @property
    def key(self) -> tuple[str, str]:
        return self.scope, self.value


@dataclass
class Stream:
    new: list[Decision] = field(default_factory=list)
    deleted: list[tuple[int, tuple[str, str] | None]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def parse_stream(payload: object, max_decisions: int) -> Stream:
    """Valid `ban` decisions of scope Ip or Range from `new`, and what `deleted`
    names (id, and (scope, value) when readable); the rest counted in rejected."""
    if not isinstance(payload, dict):
        raise BadStream(f"decision stream is a {type(payload).__name__}, not an object")
    out = Stream()
    for name in ("new", "deleted"):
        items = payload.get(name)
        if items is not None and not isinstance(items, list):
            raise BadStream(f"decision stream field {name!r} is not a list")
    for item in (payload.get("new") or ()):
        if len(out.new) >= max_decisions:
            out.rejected["too_many"] += 1
            continue
        try:
            decision = parse_decision(item)
        except _Reject as exc:
            out.rejected[exc.reason] += 1
            continue
        out.new.append(decision)
    for item in (payload.get("deleted") or ())[:max_decisions]:
        removal = _removal(item)
        if removal is None:
            out.rejected["invalid"] += 1
        else:
            out.deleted.append(removal)
    return out


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_decision(item: object) -> Decision:
    """One decision of `new`, or _Reject with the counted reason."""
    if not isinstance(item, dict):
        raise _Reject("invalid")
    ident, kind = item.get("id"), item.get("type")
    if not _is_id(ident) or not isinstance(kind, str):
        raise _Reject("invalid")
    scope = _scope(item.get("scope"))
    if scope is None:
        raise _Reject("scope" if isinstance(item.get("scope"), str) else "invalid")
    if kind.lower() != "ban":
        raise _Reject("not_ban")
    try:
        value = _value(scope, item.get("value"))
        remaining = parse_go_duration(item.get("duration"))
    except ValueError:
        raise _Reject("invalid") from None
    origin, scenario = item.get("origin", ""), item.get("scenario", "")
    if not isinstance(origin, str) or not isinstance(scenario, str):
        raise _Reject("invalid")
    return Decision(ident, scope, value, "ban", origin_label(origin), printable(scenario),
                    remaining)


def _removal(item: object) -> tuple[int, tuple[str, str] | None] | None:
    """(id, key) of a deleted decision: its id is enough, its value helps after
    a restart, when ids known before are gone."""
    if not isinstance(item, dict) or not _is_id(item.get("id")):
        return None
    scope = _scope(item.get("scope"))
    try:
        key = (scope, _value(scope, item.get("value"))) if scope else None
    except ValueError:
        key = None
    return item["id"], key


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _scope(value: object) -> str | None:
    return _SCOPES.get(value.lower()) if isinstance(value, str) else None


def _value(scope: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("bad value")
    if scope == IP:
        return parse_ip(value)
    net = parse_network(value)
    if net.endswith("/0"):  # hash:net refuses /0, and banning everyone is not a ban
        raise ValueError("range /0")
    return net


def origin_label(text: str) -> str:
    """An origin fit for a metric label and a log line ("crowdsec", "cscli", "CAPI")."""
    return _LABEL_BAD.sub("_", text)[:32] or "unknown"


def printable(text: str) -> str:
    """Text from LAPI as shown in logs and `ips-inline bans`: no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text[:MAX_TEXT])


def family(decision: Decision) -> int:
    return ipaddress.ip_network(decision.value, strict=False).version
