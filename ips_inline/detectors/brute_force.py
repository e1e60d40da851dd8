"""brute_force: new connections per source to one service port within a
window (SSH, FTP, mail, databases, remote desktops...), what log-based tools
count from auth logs, counted from packets: no log format to drift.

Only connections whose handshake the kernel proved count (the engine calls
it once per connection, when conntrack marks its final ACK ASSURED): a
spoofed SYN flood from random sources completes no handshake, so it bans
nobody here. The source really talks to us, so its bans escalate.

Ports come from `detectors.brute_force.ports`: entries "PORTS[:THRESHOLD[/WINDOW]]"
where PORTS is a port, a range a-b or a comma list; without THRESHOLD and
WINDOW the detector's own threshold and window apply.
"""

from __future__ import annotations

from ..packet.decode import PROTO_TCP, Packet
from ..packet.flows import Flow
from ..packet.tables import RateWindow
from .base import BaseDetector, Context, Signature

SIG = Signature(1000020, "Brute force: many new connections to one service",
                "Attempted Administrator Privilege Gain", 1)
MAX_PORT_ENTRIES = 1024


def parse_ports(entries: list[str], threshold: int,
                window: float) -> dict[int, tuple[int, float]]:
    """port -> (threshold, window); ValueError names a bad entry."""
    out: dict[int, tuple[int, float]] = {}
    for entry in entries:
        ports, _, limits = entry.partition(":")
        limit, _, span = limits.partition("/")
        try:
            t = int(limit) if limit else threshold
            w = float(span) if span else window
        except ValueError:
            raise ValueError(f"bad threshold/window in {entry!r}") from None
        if t < 0 or not 0 < w <= 86400:
            raise ValueError(f"threshold must be >= 0 and window 0..86400 s in {entry!r}")
        for port in _ports(ports, entry):
            out[port] = (t, w)
    if len(out) > MAX_PORT_ENTRIES * 64:
        raise ValueError("too many ports")
    return out


def _ports(text: str, entry: str) -> list[int]:
    out: list[int] = []
    for item in text.split(","):
        lo, _, hi = item.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"bad port in {entry!r}") from None
        if not 1 <= first <= last <= 65535 or last - first > 65535:
            raise ValueError(f"port out of range in {entry!r}")
        out.extend(range(first, last + 1))
    return out


class BruteForce(BaseDetector):
    name = "brute_force"
    protocols = (PROTO_TCP,)
    on_connection = True  # called once per kernel-proven new connection, not per packet

    @staticmethod
    def fires_on(flags: int) -> bool:
        return False  # never per segment: see on_connection

    def __init__(self, cfg, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.ports = parse_ports(cfg.ports, cfg.threshold, cfg.window)
        self.rates = ctx.table("brute_sources")

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        limits = self.ports.get(pkt.dport)
        if limits is None:
            return None
        threshold, window = limits
        key = pkt.src + pkt.dport.to_bytes(2, "big")  # per source and service
        rate = self.rates.get(key, now)
        if rate is None:
            rate = RateWindow(now)
            self.rates.put(key, rate)
        return SIG if rate.hit(now, window) > threshold else None
