"""Go's time.Duration text, as LAPI writes a decision's remaining time.

`3h59m58s`, `1.5s`, `-17ms`, `1h59m59.659857347s`, `0`: an optional sign, then
one or more number+unit pairs (ns, us, µs, μs, ms, s, m, h). The same grammar
and range as Go's time.ParseDuration, computed in integer nanoseconds so that
nine fraction digits are exact.
"""

from __future__ import annotations

import re

_UNITS_NS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
             "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
# ASCII digits only (\d takes any script's digits); longer units first, so "ms" is
# not read as "m" followed by a bare "s".
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_MAX_NS = (1 << 63) - 1  # Go's Duration is an int64 of nanoseconds
_MAX_LEN = 64  # LAPI writes at most ~25 characters; longer is garbage


def parse_go_duration(text: object) -> float:
    """Seconds (negative once a decision expired), or ValueError."""
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_LEN:
        raise ValueError(f"invalid duration {text!r:.80}")
    body = text[1:] if text[0] in "+-" else text
    if body == "0":
        return 0.0
    total, pos = 0, 0
    while pos < len(body):
        part = _PART.match(body, pos)
        if part is None or not (part.group(1) or part.group(2)):  # "s", ".s" have no number
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = part.group(1) or "0", part.group(2) or "", _UNITS_NS[part.group(3)]
        total += int(whole) * unit + (int(frac) * unit // 10 ** len(frac) if frac else 0)
        if total > _MAX_NS + (text[0] == "-"):
            raise ValueError(f"duration {text!r} out of range")
        pos = part.end()
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    return (-total if text[0] == "-" else total) / 1e9


def format_go_duration(seconds: int) -> str:
    """Whole seconds as LAPI reads them ("300s")."""
    return f"{int(seconds)}s"
