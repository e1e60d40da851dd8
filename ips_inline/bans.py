"""Escalation from offences to bans, and the Enforcer interface bans go through.

The engine reports offences; this decides when a source is banned and for how
long, caps new bans per minute, and never bans a whitelisted address.
Enforcement itself (kernel ipset, or a recorder in replay) sits behind
`Enforcer`.

Evidence a forger can produce must not escalate: an offence is *proven* when
it came on a connection whose handshake the kernel saw completed (the source
received our SYN-ACK, so it is who it claims to be); floods and scans are
stateless and can be sent in anyone's name. Proven bans escalate (base *
factor**n, clamped to max_duration and to ipset's per-entry limit); unproven
ones always last base_duration, so forged packets can at worst repeat a short
ban, never lengthen it. The per-minute cap on new bans is kept per detector:
a forged storm of one kind of evidence cannot use up the bans another
detector needs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .config import IPSET_MAX_TIMEOUT, BanConfig
from .packet.tables import BoundedTable


class Enforcer(Protocol):
    def ban(self, ip: str, duration: int, detector: str, count: int) -> None:
        """Make the kernel (or a recorder) drop `ip` for `duration` seconds.
        Must not block the caller: the live enforcer queues to a worker."""
        ...


@dataclass
class RecordingEnforcer:
    """Replay's enforcer: remembers bans instead of touching the kernel."""

    bans: list[tuple[str, int, str]] = field(default_factory=list)

    def ban(self, ip: str, duration: int, detector: str, count: int) -> None:
        self.bans.append((ip, duration, detector))


class Whitelist:
    """CIDR membership on raw address bytes (4 or 16), as the engine holds them."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self.v4 = [(int(n.network_address), int(n.netmask)) for n in nets if n.version == 4]
        self.v6 = [(int(n.network_address), int(n.netmask)) for n in nets if n.version == 6]

    def __contains__(self, raw: bytes) -> bool:
        addr = int.from_bytes(raw, "big")
        nets = self.v4 if len(raw) == 4 else self.v6
        return any(addr & mask == net for net, mask in nets)


class _History:
    """Per source: offences in the current window per detector, and its
    escalation step (proven bans so far)."""

    __slots__ = ("seen", "offences", "bans", "banned_until")

    def __init__(self, now: float) -> None:
        self.seen = now
        self.offences: dict[str, tuple[float, int]] = {}  # detector -> (window start, count)
        self.bans = 0  # proven bans so far: the escalation step
        self.banned_until = 0.0


class BanManager:
    def __init__(self, cfg: BanConfig, whitelist: Whitelist, enforcer: Enforcer) -> None:
        self.cfg = cfg
        self.whitelist = whitelist
        self.enforcer = enforcer
        # History outlives a ban: escalation needs to remember earlier ones.
        ttl = max(cfg.offence_window, cfg.history_ttl, float(cfg.max_duration))
        self.history = BoundedTable[bytes, _History]("offenders", cfg.max_tracked, ttl)
        self.active: dict[bytes, float] = {}  # raw src -> ban expiry (engine time)
        self.rate_capped = 0
        self._minute: dict[str, tuple[float, int]] = {}  # detector -> (minute start, bans)
        self.unbans = 0
        # For EVE and metrics: on_ban(src_raw, detector, duration, count, now) and
        # on_unban(src_raw, reason, now).
        self.on_ban: Callable[[bytes, str, int, int, float], None] | None = None
        self.on_unban: Callable[[bytes, str, float], None] | None = None

    def is_banned(self, src: bytes, now: float) -> bool:
        until = self.active.get(src)
        if until is None:
            return False
        if now < until:
            return True
        del self.active[src]
        return False

    def offence(self, src: bytes, detector: str, ban_after: int, now: float,
                proven: bool = False) -> bool:
        """Record one offence; ban when `ban_after` are reached inside the
        window. `proven`: the evidence came on a kernel-proven connection.
        Returns True if this offence caused a ban."""
        entry = self.history.get(src, now)
        if entry is None:
            entry = _History(now)
            self.history.put(src, entry)
        entry.seen = now
        start, count = entry.offences.get(detector, (now, 0))
        if now - start > self.cfg.offence_window:
            start, count = now, 0
        count += 1
        entry.offences[detector] = (start, count)
        if count < ban_after or src in self.whitelist:
            return False
        entry.offences[detector] = (now, 0)
        return self._ban(src, entry, detector, now, proven)

    def offences(self, src: bytes, detector: str, now: float) -> int:
        """Offences of `src` by `detector` in the current window (for EVE)."""
        entry = self.history.get(src, now)
        if entry is None:
            return 0
        start, count = entry.offences.get(detector, (now, 0))
        return 0 if now - start > self.cfg.offence_window else count

    def duration(self, previous_bans: int) -> int:
        cfg = self.cfg
        seconds = cfg.base_duration * cfg.factor ** min(previous_bans, 64)
        return int(min(seconds, cfg.max_duration, IPSET_MAX_TIMEOUT))

    def _ban(self, src: bytes, entry: _History, detector: str, now: float,
             proven: bool) -> bool:
        start, made = self._minute.get(detector, (now, 0))
        if now - start >= 60.0:
            start, made = now, 0
        if made >= self.cfg.max_per_minute:
            self.rate_capped += 1
            return False
        self._minute[detector] = (start, made + 1)
        if proven:
            duration = self.duration(entry.bans)
            entry.bans += 1
        else:
            duration = self.duration(0)  # forgeable evidence: never escalates
        entry.banned_until = now + duration
        self.active[src] = now + duration
        ip = str(ipaddress.ip_address(src))
        step = max(entry.bans, 1)
        self.enforcer.ban(ip, duration, detector, step)
        if self.on_ban is not None:
            self.on_ban(src, detector, duration, step, now)
        return True

    def seed(self, src: bytes, count: int, until: float, now: float) -> None:
        """Take over a ban (or past bans) known from the store or the kernel."""
        entry = self.history.get(src, now)
        if entry is None:
            entry = _History(now)
            self.history.put(src, entry)
        entry.bans = max(entry.bans, count)
        entry.banned_until = until
        if until > now:
            self.active[src] = until

    def sync(self, banned: dict[bytes, float], now: float) -> None:
        """Follow bans changed outside the engine (`ips-inline ban/unban`):
        `banned` maps every currently banned source to its expiry."""
        for src in [s for s in self.active if s not in banned]:
            del self.active[src]
            self._unbanned(src, "manual", now)
        for src, until in banned.items():
            if until > now and src not in self.active:
                self.seed(src, 1, until, now)

    def _unbanned(self, src: bytes, reason: str, now: float) -> None:
        self.unbans += 1
        if self.on_unban is not None:
            self.on_unban(src, reason, now)

    def sweep(self, now: float) -> None:
        self.history.sweep(now)
        for src in [s for s, until in self.active.items() if until <= now]:
            del self.active[src]
            self._unbanned(src, "expired", now)
