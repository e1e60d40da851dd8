"""Detectors: the explicit list of plug-ins, in dispatch order.

Each is a small class implementing `base.Detector`; the engine asks only the
ones whose `protocols` match a packet, and the payload ones only when a
complete HTTP request is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Config, rule_variables
from .base import Context, Detector, Signature
from .brute_force import BruteForce
from .http_attacks import CmdInjection, PathTraversal, Sqli, Xss
from .icmp_flood import IcmpFlood
from .port_scan import PortScan
from .rules import RulesHttp, RulesPacket
from .stealth_scans import FinScan, NullScan, XmasScan
from .syn_flood import SynFlood

if TYPE_CHECKING:
    from ..rules import RuleSet

ALL = (IcmpFlood, SynFlood, PortScan, NullScan, FinScan, XmasScan,
       Sqli, Xss, CmdInjection, PathTraversal, BruteForce)

__all__ = ["ALL", "Context", "Detector", "Signature", "build", "load_rules"]


def build(cfg: Config, ctx: Context, ruleset: RuleSet | None = None) -> list[Detector]:
    """Instances of every enabled detector, each with its own config section;
    the rules ones when a ruleset with rules is given."""
    dets: list[Detector] = [cls(cfg.detectors[cls.name], ctx) for cls in ALL
                            if cfg.detectors[cls.name].enabled]
    rules_cfg = cfg.detectors["rules"]
    if ruleset is not None and ruleset.loaded and rules_cfg.enabled:
        dets.append(RulesHttp(rules_cfg, ctx, ruleset))
        if any(rule.phase == "packet" for rule in ruleset.rules):
            dets.append(RulesPacket(rules_cfg, ctx, ruleset))
    return dets


def load_rules(cfg: Config, old: RuleSet | None = None) -> RuleSet:
    """The rule files of [rules] (and the shipped ruleset), threshold state
    carried over from `old`. RuleFileError (one line) on a broken file."""
    from ..rules import expand, load

    rules = cfg.rules
    ruleset = load(expand(rules.files), rules.default, rule_variables(rules), rules.max_tracked)
    if old is not None:
        ruleset.carry_state_from(old)
    return ruleset
