"""Request parts already inspected and found clean, so repeats are neither
decoded nor inspected again.

A part is raw request text (a parameter, a header value...) and how it is
decoded (http.Part). Decoding and the payload detectors are pure functions
of it, so a part that passed all detectors passes again. Browsers repeat
most of what they send: user agent, cookies, paths, referers. Bounded: at
most `maxlen` parts of at most `max_chars` characters each, oldest out
first; the engine starts a new one when the rules change (reload).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .stream import Part

MAX_VALUES = 4096
MAX_CHARS = 512  # longer values are rare and unlikely to repeat: not kept


class CleanValues:
    __slots__ = ("_seen", "maxlen", "max_chars", "hits")

    def __init__(self, maxlen: int = MAX_VALUES, max_chars: int = MAX_CHARS) -> None:
        self._seen: OrderedDict[Part, None] = OrderedDict()  # O(1) oldest-out (see tables.py)
        self.maxlen = maxlen
        self.max_chars = max_chars
        self.hits = 0

    def __len__(self) -> int:
        return len(self._seen)

    def unseen(self, parts: list[Part]) -> list[Part]:
        """The parts not known clean, in order."""
        seen = self._seen
        fresh = [p for p in parts if p not in seen]
        self.hits += len(parts) - len(fresh)
        return fresh

    def add(self, parts: Iterable[Part]) -> None:
        seen, limit = self._seen, self.max_chars
        for part in parts:
            if len(part[0]) <= limit and part not in seen:
                if len(seen) >= self.maxlen:
                    seen.popitem(last=False)
                seen[part] = None
