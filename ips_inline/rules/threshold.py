"""`threshold` and `detection_filter` state: Suricata 7's semantics, bounded.

Per tracked key (rule plus source, destination, address pair, flow, or the
rule alone) a window opens at the first match and lasts `seconds`:

- limit N: the action applies to every match, the alert to the first N.
- threshold N: action and alert on every Nth match; the count then restarts.
- both N: nothing before the Nth match, action and alert on the Nth, the
  action alone on later matches of the window.
- detection_filter N: action and alert on every match after the Nth.

State is one table of at most `max_entries` keys, least recently used out
first (counted in `evictions`); time is passed in, never read from a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

TRACKS = ("by_src", "by_dst", "by_rule", "by_both", "by_flow")
KINDS = ("limit", "threshold", "both", "detection_filter")


@dataclass(frozen=True)
class ThresholdSpec:
    kind: str
    track: str
    count: int
    seconds: float


@dataclass(frozen=True)
class Tuple5:
    """The addresses and ports a key is built from."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    proto: int


def track_key(spec: ThresholdSpec, t: Tuple5) -> tuple:
    if spec.track == "by_src":
        return (t.src,)
    if spec.track == "by_dst":
        return (t.dst,)
    if spec.track == "by_rule":
        return ()
    if spec.track == "by_both":  # one pair whatever the direction
        return tuple(sorted((t.src, t.dst)))
    ends = sorted(((t.src, t.sport), (t.dst, t.dport)))
    return (t.proto, *ends)


class ThresholdTable:
    name = "rules_threshold"  # in ips_inline_state_evictions_total{table}

    def __init__(self, max_entries: int = 65536) -> None:
        self.max_entries = max_entries
        self.evictions = 0
        self._entries: OrderedDict[tuple, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, rule_key: tuple, spec: ThresholdSpec, t: Tuple5,
              now: float) -> tuple[bool, bool]:
        """(apply the action, log an alert) for one more match of the rule."""
        key = (*rule_key, *track_key(spec, t))
        entry = self._entries.get(key)
        if entry is None or now > entry[0] + spec.seconds:
            entry = [now, 0.0]
            self._entries[key] = entry
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
        self._entries.move_to_end(key)
        entry[1] += 1
        count, limit = entry[1], spec.count
        if spec.kind == "limit":
            return True, count <= limit
        if spec.kind == "threshold":
            if count >= limit:
                entry[1] = 0
                return True, True
            return False, False
        if spec.kind == "both":
            return count >= limit, count == limit
        return count > limit, count > limit  # detection_filter
