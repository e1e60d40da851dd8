"""Bouncer side: LAPI's ban decisions enforced in the kernel, before the queue.

Scope Ip goes into the daemon's own ban sets (hash:ip), scope Range into two
hash:net sets of its own; each entry's ipset timeout is the decision's
remaining time (clamped to ipset's limit), so the kernel ends it on time
even if the daemon is gone. Several decisions may cover one value: the entry
lasts as long as the longest, and goes when the last is deleted or expires.

What is never applied (counted by reason, logged once per value): a decision
covering a whitelisted address or CIDR (either way round for a Range), or the
LAPI server's own address (a ban on it would cut us off from the unban);
decisions this host pushed itself (its own ban is already there). A local ban
(the daemon's or `ips-inline ban`) lasting longer than a decision wins: the
decision neither shortens nor removes it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import IPSET_MAX_TIMEOUT
from ..enforce.ipset import EnforceError, SetFull
from ..enforce.store import BanStore
from . import state
from .decisions import IP, RANGE, REJECT_REASONS, Decision, Stream

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (scope, value)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ORIGINS = 16  # distinct origin labels in the decisions gauge; the rest are "other"
_LOGGED_MAX = 4096


class KernelSet(Protocol):
    """enforce.ipset.IpsetEnforcer, as the bouncer uses it."""

    def add(self, ip: str, timeout: int) -> None: ...
    def delete(self, ip: str) -> bool: ...
    def entries(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Held:
    decision: Decision
    until: float  # epoch seconds


class Bouncer:
    def __init__(self, store: BanStore, ips: KernelSet, nets: KernelSet,
                 whitelist: Iterable[str], max_decisions: int,
                 own: Callable[[int], bool] = lambda _id: False,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.sets = {IP: ips, RANGE: nets}
        self.whitelist = [ipaddress.ip_network(c, strict=False) for c in whitelist]
        self.protected: list[Network] = []  # LAPI's own addresses, set by the agent
        self.max_decisions = max_decisions
        self.own = own
        self.clock = clock
        self.held: dict[int, Held] = {}
        self.by_key: dict[Key, set[int]] = {}
        self.rejected: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self._logged: set[Key] = set()
        self._origins: list[str] = []

    # -- start-up ----------------------------------------------------------------
    def restore(self) -> None:
        """Range decisions of the last run back into the net sets (Ip ones come
        back with the other bans): LAPI may be down now, they stay enforced."""
        now = self.clock()
        kernel = self.sets[RANGE].entries()
        for cidr, entry in state.ranges(self.store.load_section(state.SECTION)).items():
            if entry["expires"] - now >= 1 and cidr not in kernel:
                self._kernel_add(RANGE, cidr, entry["expires"] - now)

    # -- one answer of the stream -------------------------------------------------
    def apply(self, stream: Stream, startup: bool) -> tuple[int, int]:
        """Apply one stream answer; returns (values set, values removed)."""
        now = self.clock()
        self.rejected.update(stream.rejected)
        touched: set[Key] = set()
        if startup:  # the full list: what we applied before and is not in it goes
            touched |= self._applied_before(now)
            self.held.clear()
            self.by_key.clear()
        for decision in stream.new:
            touched |= self._take(decision, now)
        for ident, key in stream.deleted:
            touched |= self._drop(ident, key)
        self._expire(now)
        return self._commit(touched, now)

    def _take(self, decision: Decision, now: float) -> set[Key]:
        old = self._drop(decision.id, None)
        if decision.remaining <= 0 or self.own(decision.id):
            return old
        reason = self._refusal(decision)
        if reason is not None:
            self.rejected[reason] += 1
            self._log_once(decision, reason)
            return old
        if len(self.held) >= self.max_decisions:
            self.rejected["too_many"] += 1
            self._log_once(decision, "too_many")
            return old
        self.held[decision.id] = Held(decision, now + decision.remaining)
        self.by_key.setdefault(decision.key, set()).add(decision.id)
        return old | {decision.key}

    def _drop(self, ident: int, key: Key | None) -> set[Key]:
        held = self.held.pop(ident, None)
        if held is not None:
            key = held.decision.key
            ids = self.by_key.get(key, set())
            ids.discard(ident)
            if not ids:
                self.by_key.pop(key, None)
        return {key} if key is not None else set()

    def _expire(self, now: float) -> None:
        for ident in [i for i, h in self.held.items() if h.until <= now]:
            self._drop(ident, None)

    def _refusal(self, decision: Decision) -> str | None:
        net = ipaddress.ip_network(decision.value, strict=False)
        for other in (*self.whitelist, *self.protected):
            if net.version == other.version and net.overlaps(other):
                return "whitelisted"
        return None

    def _log_once(self, decision: Decision, reason: str) -> None:
        if decision.key in self._logged:
            return
        if len(self._logged) >= _LOGGED_MAX:
            self._logged.clear()
        self._logged.add(decision.key)
        what = {"whitelisted": "covers a whitelisted address or the LAPI server",
                "too_many": f"exceeds crowdsec.max_decisions ({self.max_decisions})"}[reason]
        log.warning("crowdsec: decision %d (%s %s from %s) not applied: it %s",
                    decision.id, decision.scope, decision.value, decision.origin, what)

    def _applied_before(self, now: float) -> set[Key]:
        section = self.store.load_section(state.SECTION)
        keys = {(RANGE, cidr) for cidr, e in state.ranges(section).items() if e["expires"] > now}
        keys |= {(IP, ip) for ip, e in self.store.load().items()
                 if state.pulled(e) and e["expires"] > now}
        return keys | set(self.by_key)

    def _best(self, key: Key) -> Held | None:
        helds = [self.held[i] for i in self.by_key.get(key, ())]
        return max(helds, key=lambda h: h.until) if helds else None

    # -- kernel and state file -----------------------------------------------------
    def _commit(self, touched: set[Key], now: float) -> tuple[int, int]:
        if not touched:
            return 0, 0
        bans, section = self.store.load(), self.store.load_section(state.SECTION)
        known_ranges = state.ranges(section)
        set_, removed = [], []
        for key in sorted(touched):
            best = self._best(key)
            current = bans.get(key[1]) if key[0] == IP else known_ranges.get(key[1])
            if best is not None:
                if key[0] == IP and current and not state.pulled(current) \
                        and current["expires"] >= best.until:
                    continue  # a longer local ban stays as it is
                if self._kernel_add(key[0], key[1], best.until - now):
                    set_.append(best)
            elif current is not None and current["expires"] > now and (
                    key[0] == RANGE or state.pulled(current)):
                self._kernel_delete(key[0], key[1])
                removed.append(key)
        if set_ or removed:
            self.store.update(lambda b, s: self._record(b, s, set_, removed, now),
                              section=state.SECTION)
        return len(set_), len(removed)

    @staticmethod
    def _record(bans: dict[str, dict[str, Any]], section: dict[str, Any], set_: list[Held],
                removed: list[Key], now: float) -> None:
        ranges = {c: e for c, e in state.ranges(section).items() if e["expires"] > now}
        for held in set_:
            d = held.decision
            # What the kernel holds: a longer decision is renewed by the next full pull.
            expires = round(min(held.until, now + IPSET_MAX_TIMEOUT), 3)
            if d.scope == IP:
                old = bans.get(d.value, {})
                if old and not state.pulled(old) and old["expires"] >= held.until:
                    continue  # a local ban came meanwhile
                bans[d.value] = {"expires": expires, "detector": d.scenario,
                                 "count": int(old.get("count", 1)),
                                 "origin": f"crowdsec:{d.origin}"}
            else:
                ranges[d.value] = {"expires": expires, "scenario": d.scenario,
                                   "origin": f"crowdsec:{d.origin}"}
        for scope, value in removed:
            if scope == RANGE:
                ranges.pop(value, None)
            elif value in bans and state.pulled(bans[value]):
                bans[value]["expires"] = 0  # ended; the count stays for escalation
        section["ranges"] = ranges

    def _kernel_add(self, scope: str, value: str, remaining: float) -> bool:
        timeout = int(min(IPSET_MAX_TIMEOUT, max(1, math.ceil(remaining))))
        try:
            self.sets[scope].add(value, timeout)
        except SetFull:
            self.rejected["set_full"] += 1
            log.error("crowdsec: %s %s not applied: ipset full (raise live.maxelem)",
                      scope, value)
            return False
        except EnforceError as exc:
            self.rejected["netlink"] += 1
            log.error("crowdsec: %s %s not applied: %s", scope, value, exc)
            return False
        return True

    def _kernel_delete(self, scope: str, value: str) -> None:
        try:
            self.sets[scope].delete(value)
        except EnforceError as exc:
            log.error("crowdsec: removing %s %s failed: %s", scope, value, exc)

    # -- metrics --------------------------------------------------------------------
    def gauge(self) -> Counter[tuple[str, str]]:
        """Decisions enforced now, by (origin, scope); origins bounded in number."""
        now = self.clock()
        out: Counter[tuple[str, str]] = Counter()
        for held in list(self.held.values()):
            if held.until > now:
                out[(self._origin(held.decision.origin), held.decision.scope)] += 1
        return out

    def _origin(self, origin: str) -> str:
        if origin in self._origins:
            return origin
        if len(self._origins) < MAX_ORIGINS:
            self._origins.append(origin)
            return origin
        return "other"
