"""Undo the encodings attackers hide behind, so detectors match what the
application will finally see: percent (repeated, for double encoding),
%uXXXX, overlong UTF-8, `+` as space, HTML entities, SQL comments, case and
whitespace.
"""

from __future__ import annotations

import html
import re
from html.entities import html5
from urllib.parse import unquote_to_bytes

_ROUNDS = 3  # percent-decoding rounds: catches double and triple encoding
# IIS's %uXXXX: UTF-16 code units; a surrogate pair is one character, a lone
# surrogate is no character (U+FFFD), so decoding never builds an unencodable string.
_PCT_U = re.compile(r"%u([dD][89abAB][0-9a-fA-F]{2})%u([dD][c-fC-F][0-9a-fA-F]{2})"
                    r"|%u([0-9a-fA-F]{4})")
_OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]")
_SQL_VERSIONED = re.compile(r"/\*!\d*")  # MySQL /*!50000 ... */ runs its content
_SPACE = re.compile(r"\s+")
_BLANKS = re.compile(r"[^\S\n]+")  # white space other than newlines
_URL_IGNORED = re.compile(r"[\t\r\n\x00]")  # browsers drop these inside URLs


# html.unescape() replaces "&#..." and "&name" when a prefix of the name (two
# characters or more) is an HTML5 reference name; names hold no delimiter,
# so walking prefixes of the text after "&" finds the same ones.
_NAME_PREFIXES = frozenset(name[:j] for name in html5 for j in range(2, len(name) + 1))


def unescape(text: str) -> str:
    """html.unescape(), called only when it would change something: the
    "&page=2" separators of a query cost it a regex callback and a dozen
    lookups each."""
    i = text.find("&")
    while i >= 0:
        if text[i + 1:i + 2] == "#":
            return html.unescape(text)
        end = i + 3
        head = text[i + 1:end]
        while head in _NAME_PREFIXES:
            if head in html5:
                return html.unescape(text)
            end += 1
            if end > len(text):
                break
            head = text[i + 1:end]
        i = text.find("&", i + 1)
    return text


def _overlong(match: re.Match[bytes]) -> bytes:
    b1, b2 = match.group(0)
    return bytes((((b1 & 0x1F) << 6) | (b2 & 0x3F),))


def _pct_u(match: re.Match[str]) -> str:
    high, low, unit = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    code = int(unit, 16)
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


def percent_decode(text: str, plus: bool) -> str:
    """Up to three rounds of URL decoding, stopping once stable. Never raises:
    whatever the bytes, the result is a valid string."""
    for _ in range(_ROUNDS):
        if plus:
            text = text.replace("+", " ")
        if "%" not in text:
            break
        text_u = _PCT_U.sub(_pct_u, text) if "%u" in text or "%U" in text else text
        raw = _OVERLONG.sub(_overlong, unquote_to_bytes(text_u.encode("utf-8", "replace")))
        decoded = raw.decode("utf-8", "replace")
        if decoded == text:
            break
        text = decoded
    return text


def decode_value(text: str, plus: bool = True) -> str:
    """Percent-decoded value, as the application receives it (case kept:
    libinjection wants the original, regex detectors fold on their own)."""
    if "%" not in text and not (plus and "+" in text):
        return text  # most values: nothing encoded
    return percent_decode(text, plus)


def fold(text: str, newlines: bool = False) -> str:
    """Canonical form for pattern matching: entities, SQL comments, case,
    and runs of white space (tabs and newlines included) as one space.
    `newlines` keeps line breaks: to a shell they separate commands."""
    text = unescape(text) if "&" in text else text
    if "/*" in text:
        text = strip_comments(_SQL_VERSIONED.sub(" ", text)).replace("*/", " ")
    text = text.lower()
    # Every white space character but the space is unprintable: a printable
    # text without double spaces has nothing to fold (most values; skips a sub).
    if text.isprintable() and "  " not in text:
        return text
    return (_BLANKS if newlines else _SPACE).sub(" ", text)


def strip_comments(text: str) -> str:
    """SQL block comments as one space each, in one pass (a regex with a lazy
    `.*?` rescans the rest of the text for every unclosed `/*`: quadratic).
    An unclosed comment is kept as it is, so nothing is hidden behind a
    `/*` with no end."""
    out = []
    pos = 0
    while True:
        start = text.find("/*", pos)
        if start < 0:
            break
        end = text.find("*/", start + 2)
        if end < 0:
            break
        out.append(text[pos:start])
        out.append(" ")
        pos = end + 2
    out.append(text[pos:])
    return "".join(out)


def url_text(text: str) -> str:
    """Markup as a browser reads a URL attribute: entities decoded, tabs,
    line breaks and NULs dropped (`jav&#x09;ascript:` runs as javascript:)."""
    text = unescape(text) if "&" in text else text
    return _URL_IGNORED.sub("", text).lower()
