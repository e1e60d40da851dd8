"""Detectors: the explicit list of plug-ins, in dispatch order.

Each is a small class implementing `base.Detector`; the engine asks only the
ones whose `protocols` match a packet, and the payload ones only when a
complete HTTP request is ready.
"""

from __future__ import annotations

from ..config import Config
from .base import Context, Detector, Signature
from .http_attacks import CmdInjection, PathTraversal, Sqli, Xss
from .icmp_flood import IcmpFlood
from .port_scan import PortScan
from .stealth_scans import FinScan, NullScan, XmasScan
from .syn_flood import SynFlood

ALL = (IcmpFlood, SynFlood, PortScan, NullScan, FinScan, XmasScan,
       Sqli, Xss, CmdInjection, PathTraversal)

__all__ = ["ALL", "Context", "Detector", "Signature", "build"]


def build(cfg: Config, ctx: Context) -> list[Detector]:
    """Instances of every enabled detector, each with its own config section."""
    return [cls(cfg.detectors[cls.name], ctx) for cls in ALL if cfg.detectors[cls.name].enabled]
