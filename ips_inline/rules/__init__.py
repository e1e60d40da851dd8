"""The `rules` detector's engine: Suricata 7 rules (a subset) over packets and
HTTP requests. Standalone: it reads the engine's objects through the
Protocols in views.py and nothing else of the engine.

    ruleset = load(files, include_default=True, variables=Variables.build(...))
    hits = ruleset.match_http_head(req, pkt, flow, now)

Names are imported on first use, so `ips_inline.config` can use `.vars`
without loading RE2 and Hyperscan into every command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import RuleFileError
    from .loader import DEFAULT_RULES, expand, load, load_file
    from .parser import Rule, Skipped
    from .ruleset import Hit, RuleSet
    from .vars import VarError, Variables
    from .views import FlowView, PacketView, RequestView

_WHERE = {
    "DEFAULT_RULES": "loader", "expand": "loader", "load": "loader", "load_file": "loader",
    "RuleFileError": "errors", "Rule": "parser", "Skipped": "parser", "Hit": "ruleset",
    "RuleSet": "ruleset", "Variables": "vars", "VarError": "vars", "FlowView": "views",
    "PacketView": "views", "RequestView": "views",
}
__all__ = ["DEFAULT_RULES", "FlowView", "Hit", "PacketView", "RequestView", "Rule",
           "RuleFileError", "RuleSet", "Skipped", "VarError", "Variables", "expand", "load",
           "load_file"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
