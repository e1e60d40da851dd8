"""Loading rule files into a RuleSet: globs, the shipped ruleset, sid overrides."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from .errors import Invalid, RuleFileError
from .parser import Rule, Skipped, parse_text
from .ruleset import Hit, RuleSet
from .vars import VarError, Variables
from .views import FlowView, PacketView, RequestView

__all__ = ["DEFAULT_RULES", "FlowView", "Hit", "PacketView", "RequestView", "Rule",
           "RuleFileError", "RuleSet", "Skipped", "VarError", "Variables", "expand", "load",
           "load_file"]

DEFAULT_RULES = Path(__file__).with_name("default.rules")
MAX_FILE_BYTES = 64 << 20  # a rule file larger than this is refused, not read into memory

log = logging.getLogger("ips_inline.rules")


def expand(patterns: list[str]) -> list[str]:
    """rules.files: each glob's matches, sorted, in the order of the patterns; a
    pattern that matches nothing is an error (a typo would drop rules silently)."""
    out: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise RuleFileError(f"{pattern}: no rule file matches")
        out += [f for f in found if f not in out]
    return out


def load_file(path: str | Path, variables: Variables) -> tuple[list[Rule], list[Skipped]]:
    """One file's rules and skipped rules; RuleFileError on a syntax error."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleFileError(f"{name}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise RuleFileError(f"{name}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return parse_text(data.decode("utf-8", "surrogateescape"), name, variables)
    except Invalid as exc:
        raise RuleFileError(f"{name}:{exc}") from None


def load(files: list[str], include_default: bool, variables: Variables,
         max_tracked: int = 65536) -> RuleSet:
    """The shipped rules (unless include_default is false), then `files` in
    order. A rule of `files` with the gid:sid of a shipped rule replaces it
    (a way to tune or neutralise one); a gid:sid seen twice in `files` keeps
    the first and skips the other. Skipped rules are logged as warnings."""
    by_sid: dict[tuple[int, int], Rule] = {}
    skipped: list[Skipped] = []
    shipped: set[tuple[int, int]] = set()
    sources = ([DEFAULT_RULES] if include_default else []) + [Path(f) for f in files]
    for i, path in enumerate(sources):
        is_default = include_default and i == 0
        rules, skips = load_file(path, variables)
        skipped += skips
        for rule in rules:
            key = (rule.gid, rule.sid)
            first = by_sid.get(key)
            if first is not None and key not in shipped:
                skipped.append(Skipped(rule.file, rule.line, rule.sid,
                                       f"duplicate sid (first at {first.file}:{first.line})"))
                continue
            if is_default:
                shipped.add(key)
            else:
                shipped.discard(key)
            by_sid.pop(key, None)
            by_sid[key] = rule
    for s in skipped:
        log.warning("rule skipped: %s:%d sid %s: %s", s.file, s.line, s.sid, s.reason)
    return RuleSet(list(by_sid.values()), skipped, max_tracked)
