"""`pcre` as RE2: linear time in the buffer length, whatever the pattern.

A rule author's pattern runs on attacker-controlled bytes, so it must not
backtrack: every pcre is compiled with RE2 (google-re2), in Latin-1 mode so
that it matches bytes as Suricata's non-UTF PCRE does. What RE2 cannot run in
linear time (backreferences, lookahead/lookbehind, atomic groups, possessive
quantifiers, recursion, conditionals, \\G) is refused at load: the rule is
skipped with RE2's reason. Where PCRE and RE2 differ:

- flags i, s, m, G (ungreedy) map to RE2's (?i), (?s), (?m), (?U); x is done
  here (unescaped white space and #-comments outside classes removed); A
  anchors at the start (or, with R, at the previous match); E keeps `$` at
  the very end, which is RE2's own `$`.
- Without m or E, PCRE's `$` (and `\\Z`) also match before a final newline:
  a buffer ending in "\\n" is tried once more without it.
- `\\h`, `\\H`, `\\v` (vertical white space), `\\R` and `\\e` are rewritten to
  classes RE2 knows. `\\s` has no \\x0b in RE2. Case folding is ASCII only, as
  with PCRE's default C tables.
- Suricata's buffer flags pick the buffer: U http.uri, I http.uri.raw,
  P http.request_body, H http.header, D http.header.raw, M http.method,
  C http.cookie, V http.user_agent, W http.host, Z http.host.raw; R is
  relative; B and O are accepted and ignored. S, Y and Q (response buffers)
  skip the rule, as do capture-to-variable suffixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import re2

from .errors import Invalid, Unsupported

BUFFER_FLAGS = {
    "U": "http.uri", "I": "http.uri.raw", "P": "http.request_body",
    "H": "http.header", "D": "http.header.raw", "M": "http.method",
    "C": "http.cookie", "V": "http.user_agent", "W": "http.host", "Z": "http.host.raw",
}
_INLINE = {"i": "i", "s": "s", "m": "m", "G": "U"}
_RESPONSE_FLAGS = {"S": "http.stat_code", "Y": "http.stat_msg", "Q": "http.response_body"}
_IGNORED_FLAGS = frozenset("BO")
_CAPTURE = re.compile(r"/[A-Za-z]*\s*,\s*(?:flow|pkt|alert):")
_MAX_MEM = 8 << 20  # RE2's program and DFA memory per pattern

_OUTSIDE = {
    "h": r"[\t \xa0]", "H": r"[^\t \xa0]", "v": r"[\n\x0b\x0c\r\x85]",
    "V": r"[^\n\x0b\x0c\r\x85]", "R": r"(?:\r\n|[\n\x0b\x0c\r\x85])", "e": r"\x1b",
}
_INSIDE = {"h": r"\t \xa0", "v": r"\n\x0b\x0c\r\x85", "e": r"\x1b"}


@dataclass
class CompiledPcre:
    regex: object
    source: str
    negated: bool
    relative: bool
    anchored: bool
    eol_retry: bool
    buffer: str | None  # from a buffer flag, else the rule's current buffer


def _split(value: str) -> tuple[bool, str, str]:
    negated = value.startswith("!")
    if negated:
        value = value[1:].lstrip()
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise Invalid(f"pcre must be a quoted string: {value!r}")
    body = value[1:-1]
    if _CAPTURE.search(body):
        raise Unsupported("pcre capture into variables")
    end = body.rfind("/")
    if not body.startswith("/") or end == 0:
        raise Invalid(f"pcre must be /pattern/flags: {body!r}")
    return negated, body[1:end], body[end + 1:]


def _rewrite(pattern: str, extended: bool) -> tuple[str, bool, bool]:
    """(RE2 pattern, has an unescaped `$` outside classes, had `\\Z`)."""
    out: list[str] = []
    dollar = big_z = False
    in_class = False
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            esc = pattern[i + 1]
            i += 2
            if esc == "Z" and not in_class:
                out.append(r"\z")
                big_z = True
            elif in_class and esc in _INSIDE:
                out.append(_INSIDE[esc])
            elif in_class and esc in "HVR":
                raise Unsupported(f"pcre \\{esc} inside a character class")
            elif not in_class and esc in _OUTSIDE:
                out.append(_OUTSIDE[esc])
            else:
                out.append("\\" + esc)
            continue
        i += 1
        if in_class:
            out.append(ch)
            if ch == "]":
                in_class = False
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            for lead in ("^", "]"):  # "[]..." and "[^]..." hold a literal ']'
                if i < n and pattern[i] == lead:
                    out.append(lead)
                    i += 1
            continue
        if extended and ch.isspace():
            continue
        if extended and ch == "#":
            while i < n and pattern[i] != "\n":
                i += 1
            continue
        if ch == "$":
            dollar = True
        out.append(ch)
    return "".join(out), dollar, big_z


def compile_pcre(value: str) -> CompiledPcre:
    negated, pattern, flags = _split(value)
    inline: list[str] = []
    buffer: str | None = None
    relative = anchored = dollar_endonly = extended = False
    for f in flags:
        if f in _INLINE:
            inline.append(_INLINE[f])
        elif f == "x":
            extended = True
        elif f == "R":
            relative = True
        elif f == "A":
            anchored = True
        elif f == "E":
            dollar_endonly = True
        elif f in BUFFER_FLAGS:
            if buffer is not None and buffer != BUFFER_FLAGS[f]:
                raise Invalid(f"pcre has two buffer flags: {flags!r}")
            buffer = BUFFER_FLAGS[f]
        elif f in _RESPONSE_FLAGS:
            raise Unsupported(f"pcre /{f} ({_RESPONSE_FLAGS[f]}): responses are not inspected")
        elif f not in _IGNORED_FLAGS:
            raise Invalid(f"unknown pcre flag {f!r}")
    text, dollar, big_z = _rewrite(pattern, extended)
    prefix = f"(?{''.join(dict.fromkeys(inline))})" if inline else ""
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.log_errors = False
    opts.max_mem = _MAX_MEM
    try:
        regex = re2.compile((prefix + text).encode("utf-8", "surrogateescape"), opts)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise Unsupported(f"pcre not linear-time or not RE2 syntax ({reason})") from None
    eol_retry = big_z or (dollar and "m" not in inline and not dollar_endonly)
    return CompiledPcre(regex, f"/{pattern}/{flags}", negated, relative, anchored,
                        eol_retry, buffer)
