"""Payload matching: content, pcre, isdataat and bsize over one buffer, with
Suricata's relative positions and its bounded backtracking.

Items of one buffer form a chain in rule order. A positive content or pcre
moves the cursor to the end of its match; `distance`/`within` (and pcre /R,
relative isdataat) count from that cursor. When a later relative item fails,
the previous match is retried at its next occurrence, as Suricata does; every
attempt costs one step of a per-rule budget (Suricata's recursion limit), so a
crafted buffer cannot make a rule loop: a rule out of steps does not match, and
the exhaustion is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STEP_BUDGET = 2048  # find/search attempts per rule and request (Suricata: 3000)
PCRE_RETRIES = 16  # a pcre is re-run from a later start at most this often


@dataclass
class IntCmp:
    """Suricata's integer keyword: =, !, <, >, <=, >=, or an exclusive range."""

    op: str
    a: int
    b: int = 0

    def __call__(self, v: int) -> bool:
        op = self.op
        if op == "=":
            return v == self.a
        if op == "!":
            return v != self.a
        if op == "<":
            return v < self.a
        if op == ">":
            return v > self.a
        if op == "<=":
            return v <= self.a
        if op == ">=":
            return v >= self.a
        return self.a < v < self.b  # "<>"


@dataclass
class Content:
    pattern: bytes
    buffer: str
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False
    fp_chop: tuple[int, int] | None = None  # fast_pattern:offset,length

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None

    @property
    def needle(self) -> bytes:
        return self.pattern.lower() if self.nocase else self.pattern


@dataclass
class Pcre:
    regex: Any  # a compiled re2 pattern (bytes, Latin-1)
    source: str
    buffer: str
    negated: bool = False
    relative: bool = False
    anchored: bool = False
    eol_retry: bool = False  # `$`/`\Z` may also match before a final newline (PCRE)


@dataclass
class IsDataAt:
    n: int
    buffer: str
    relative: bool = False
    negated: bool = False


@dataclass
class Bsize:
    cmp: IntCmp
    buffer: str
    relative: bool = False  # bsize is never relative (mypyc skips init=False defaults)


Item = Content | Pcre | IsDataAt | Bsize


class Budget:
    __slots__ = ("left", "exhausted")

    def __init__(self, steps: int = STEP_BUDGET) -> None:
        self.left = steps
        self.exhausted = False

    def take(self) -> bool:
        if self.left <= 0:
            self.exhausted = True
            return False
        self.left -= 1
        return True


def _window(it: Content, prev: int, n: int) -> tuple[int, int]:
    if it.relative:
        base = prev + (it.distance or 0)
        stop = base + it.within if it.within is not None else n
        return max(base, 0), min(stop, n)
    start = it.offset or 0
    stop = start + it.depth if it.depth is not None else n
    return start, min(stop, n)


def _find(it: Content, buf: bytes, lbuf: bytes, start: int, stop: int) -> int:
    hay = lbuf if it.nocase else buf
    needle = it.needle
    if it.endswith:
        pos = len(buf) - len(needle)
        if pos >= start and pos + len(needle) <= stop and hay.startswith(needle, pos):
            return pos
        return -1
    return hay.find(needle, start, stop)


class _Span:
    """A match's span in the whole buffer."""

    __slots__ = ("_start", "_end")

    def __init__(self, start: int, end: int) -> None:
        self._start, self._end = start, end

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end


def _search(it: Pcre, buf: bytes, start: int) -> _Span | None:
    """Suricata runs a relative pcre on the rest of the buffer, so `^` and /A
    anchor at the previous match; an absolute one on the whole buffer."""
    subject = buf[start:] if start else buf
    fn = it.regex.match if it.anchored else it.regex.search
    m = fn(subject)
    if m is None and it.eol_retry and subject.endswith(b"\n"):
        m = fn(subject[:-1])
    return None if m is None else _Span(m.start() + start, m.end() + start)


def chain(items: list[Item], buf: bytes, lbuf: bytes, budget: Budget) -> bool:
    """Do the items of one buffer all match it?"""
    return _chain(items, 0, buf, lbuf, 0, budget)


def _chain(items: list[Item], i: int, buf: bytes, lbuf: bytes, prev: int,
           budget: Budget) -> bool:
    n = len(buf)
    while i < len(items):
        it = items[i]
        retry = i + 1 < len(items) and items[i + 1].relative
        if isinstance(it, Content):
            if not budget.take():
                return False
            start, stop = _window(it, prev, n)
            pos = _find(it, buf, lbuf, start, stop)
            if it.negated:
                if pos >= 0:
                    return False
            elif pos < 0:
                return False
            elif not retry or it.endswith:
                prev = pos + len(it.pattern)
            else:
                return _retry_content(items, i, it, buf, lbuf, pos, stop, budget)
        elif isinstance(it, Pcre):
            if not budget.take():
                return False
            m = _search(it, buf, prev if it.relative else 0)
            if it.negated:
                if m is not None:
                    return False
            elif m is None:
                return False
            elif not retry:
                prev = m.end()
            else:
                return _retry_pcre(items, i, it, buf, lbuf, m, budget)
        elif isinstance(it, IsDataAt):
            present = (prev + it.n <= n) if it.relative else (it.n < n)
            if present == it.negated:
                return False
        elif not it.cmp(n):  # Bsize
            return False
        i += 1
    return True


def _retry_content(items: list[Item], i: int, it: Content, buf: bytes, lbuf: bytes,
                   pos: int, stop: int, budget: Budget) -> bool:
    hay = lbuf if it.nocase else buf
    needle = it.needle
    while pos >= 0:
        if _chain(items, i + 1, buf, lbuf, pos + len(needle), budget):
            return True
        if not budget.take():
            return False
        pos = hay.find(needle, pos + 1, stop)
    return False


def _next(it: Pcre, buf: bytes, pos: int) -> _Span | None:
    """The next match starting at or after `pos`, with the whole buffer as context."""
    m = it.regex.search(buf, pos)
    if m is None and it.eol_retry and buf.endswith(b"\n") and pos < len(buf):
        m = it.regex.search(buf[:-1], pos)
    return None if m is None else _Span(m.start(), m.end())


def _retry_pcre(items: list[Item], i: int, it: Pcre, buf: bytes, lbuf: bytes, m: _Span,
                budget: Budget) -> bool:
    for _ in range(PCRE_RETRIES):
        if _chain(items, i + 1, buf, lbuf, m.end(), budget):
            return True
        if it.anchored or m.start() + 1 > len(buf) or not budget.take():
            return False
        following = _next(it, buf, m.start() + 1)
        if following is None:
            return False
        m = following
    return False
