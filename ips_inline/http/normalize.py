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
_PCT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]")
_SQL_VERSIONED = re.compile(r"/\*!\d*")  # MySQL /*!50000 ... */ runs its content
_SQL_COMMENT = re.compile(r"/\*.*?\*/", re.S)
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


def percent_decode(text: str, plus: bool) -> str:
    """Up to three rounds of URL decoding, stopping once stable."""
    for _ in range(_ROUNDS):
        if plus:
            text = text.replace("+", " ")
        if "%" not in text:
            break
        text_u = _PCT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
        raw = _OVERLONG.sub(_overlong, unquote_to_bytes(text_u))
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
        text = _SQL_COMMENT.sub(" ", _SQL_VERSIONED.sub(" ", text)).replace("*/", " ")
    text = text.lower()
    # Every white space character but the space is unprintable: a printable
    # text without double spaces has nothing to fold (most values; skips a sub).
    if text.isprintable() and "  " not in text:
        return text
    return (_BLANKS if newlines else _SPACE).sub(" ", text)


def url_text(text: str) -> str:
    """Markup as a browser reads a URL attribute: entities decoded, tabs,
    line breaks and NULs dropped (`jav&#x09;ascript:` runs as javascript:)."""
    text = unescape(text) if "&" in text else text
    return _URL_IGNORED.sub("", text).lower()


def param_parts(query: str) -> list[str]:
    """The raw values of `a=1&b=2`; a bare token (no '=') counts as a value,
    and so does the whole string (attacks can span parameters)."""
    if not query:
        return []
    out = []
    for part in query.split("&"):
        _name, sep, value = part.partition("=")
        out.append(value if sep else part)
    if len(out) > 1:
        out.append(query)
    return out
