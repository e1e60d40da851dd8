"""A second SQL injection layer, for two forms libinjection misses:

- stacked queries: a statement closed, then a new one (`'; SELECT * FROM
  accounts;--`, fingerprint s;Eok; `'; shutdown--`);
- keywords split by inline comments, for filters or applications that strip
  comments before the query is built (`UN/**/ION SEL/**/ECT`, `SEL/*x*/ECT`),
  and MySQL versioned comments, whose content MySQL runs (`/*!50000UNION*/`).

Prose has semicolons before words like "select" or "update" ("O'Brien; select
the best option"), so a stacked query needs three things: what precedes the
";" closes a value (a quote, a parenthesis or a digit, or nothing at all), a
statement keyword follows, and the words after it have that statement's shape
(`delete from`, `insert into`, `update x set`, `drop table`, `exec xp_...`,
`select *`, `select f(...)`, `select a, b from`...). A split keyword is a SQL
keyword that exists only once the comments between word characters are
removed: no prose or code writes `SEL/*x*/ECT`.

Linear: the text is walked with str.find from ";" to ";" and from comment to
comment; the pattern tried after a ";" never matches past the next one (see
_STATEMENT), and the words read around a comment are bounded, so the work adds
up to a constant times the value's length whatever the input.

Not covered: statements after a line comment (`;--\nSELECT`), MSSQL statements
stacked without a ";", keywords split by anything but inline comments.
"""

from __future__ import annotations

import re

# Inline comments are taken out first (see _uncomment), so white space is the
# only separator. No part of _STATEMENT matches a ";" but a final one, and its
# repeated items are told apart by their first character, so a match attempt
# ends before the next ";": all attempts add up to the value's length.
_SEP = r"\s+"
_OPT = r"\s*"
_WORD = r"[A-Za-z_][\w$]*"
_NAME = rf"{_WORD}(?:\.{_WORD})?"
_COLUMNS = rf"{_WORD}(?:{_OPT},{_OPT}{_WORD}){{0,16}}"
# What follows a table name in a statement (prose goes on with words).
_TAIL = (rf"(?:{_OPT}(?:$|;|--|#|\)|,)"
         r"|\s+(?:where|limit|order|group|union|join|inner|left|right|as|into|having)\b)")
_FROM = rf"from(?:{_OPT}\(|{_SEP}{_NAME}{_TAIL})"
_STATEMENT = re.compile(
    _OPT + r"(?:"
    rf"select(?:{_OPT}(?:@|\(|['\"`])|{_SEP}(?:null|distinct|case|top)\b|{_SEP}{_WORD}{_OPT}\("
    rf"|{_SEP}\d+{_OPT}(?:,|$|;|--|#|\)|from\b)"
    rf"|{_OPT}\*{_OPT}{_FROM}|{_SEP}{_COLUMNS}{_SEP}{_FROM})"
    rf"|(?:insert|replace){_SEP}(?:ignore{_SEP})?into{_SEP}{_NAME}"
    rf"(?:{_OPT}\(|{_SEP}(?:values|select|set)\b)"
    rf"|update{_SEP}{_NAME}{_SEP}set\b"
    rf"|delete{_SEP}{_FROM}"
    rf"|(?:drop|create|alter|truncate|rename){_SEP}(?:temporary{_SEP})?"
    r"(?:table|database|schema|view|procedure|proc|function|user|login|index|trigger|column)\b"
    rf"|exec(?:ute)?(?:{_SEP}|(?=[(@'\"]))(?:xp_|sp_|master\b|[(@'\"])"
    rf"|(?:declare|set){_SEP}@"
    rf"|waitfor{_SEP}(?:delay|time)\b"
    rf"|shutdown(?:{_OPT}(?:--|#|;|$)|{_SEP}with\b)"
    rf"|call{_SEP}{_NAME}{_OPT}\("
    rf"|load{_SEP}data{_SEP}(?:local|infile)\b"
    rf"|copy{_SEP}{_WORD}{_SEP}(?:from|to){_SEP}program\b"
    r")",
    re.I | re.A)
# What may close the value before the ";": a quote, a bracket, a digit (or a ";").
_CLOSERS = frozenset("'\"`)]0123456789;")

# Keywords that mean SQL once a comment inside them is removed.
KEYWORDS = frozenset((
    "select", "union", "insert", "update", "delete", "drop", "from", "where", "having", "order",
    "group", "into", "values", "table", "exec", "execute", "declare", "sleep", "benchmark",
    "waitfor", "delay", "concat", "information_schema", "load_file", "outfile", "dumpfile",
    "limit", "offset", "char", "ascii", "substring", "substr", "database", "version", "schema",
    "column", "alter", "create", "truncate", "shutdown", "procedure", "xp_cmdshell", "null",
    "like", "and", "or", "xor", "not", "case", "when", "then", "else", "end", "cast", "convert",
    "extractvalue", "updatexml", "pg_sleep",
))
_WORDCHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_VERSIONED = re.compile(r"/\*!\d*\s*([A-Za-z_]\w*)", re.A)  # MySQL runs what follows
_MAX_HALF = 32  # word characters read on each side of a comment


def stacked_or_split(value: str) -> bool:
    """Whether a decoded value holds a stacked query or a comment-split SQL
    keyword (see the module doc)."""
    return ";" in value and _stacked(_uncomment(value)) or "/*" in value and _split(value)


def _uncomment(value: str) -> str:
    """Every complete inline comment as one space (an unterminated one is
    left as text), in one pass."""
    if "/*" not in value:
        return value
    out: list[str] = []
    pos = 0
    while (start := value.find("/*", pos)) >= 0:
        stop = value.find("*/", start + 2)
        if stop < 0:
            break
        out += (value[pos:start], " ")
        pos = stop + 2
    out.append(value[pos:])
    return "".join(out)


def _stacked(value: str) -> bool:
    prev, at = 0, value.find(";")
    while at >= 0:
        # The white space before this ";" reaches back at most to the previous
        # one, so these slices add up to len(value) too.
        before = value[prev:at].rstrip()
        closed = before[-1] in _CLOSERS if before else True  # the start, or ";;"
        if closed and _STATEMENT.match(value, at + 1):
            return True
        prev, at = at + 1, value.find(";", at + 1)
    return False


def _split(value: str) -> bool:
    """A keyword made by removing comments from between word characters, or
    a keyword at the start of a versioned comment."""
    start = value.find("/*")
    while start >= 0:
        if value.startswith("/*!", start):
            match = _VERSIONED.match(value, start)
            if match and match.group(1).lower() in KEYWORDS:
                return True
        stop = value.find("*/", start + 2)
        if stop < 0:
            return False
        if _joins_keyword(value, start, stop + 2):
            return True
        start = value.find("/*", stop + 2)
    return False


def _joins_keyword(value: str, start: int, stop: int) -> bool:
    """Whether the word characters around the comment value[start:stop]
    (and around further comments inside the same word: SE/**/LE/**/CT),
    joined, make a keyword."""
    left = start
    while left > 0 and start - left < _MAX_HALF and value[left - 1] in _WORDCHARS:
        left -= 1
    if left == start:
        return False
    word, pos = value[left:start], stop
    for _ in range(8):  # comments chained inside one word
        right = pos
        while right < len(value) and right - pos < _MAX_HALF and value[right] in _WORDCHARS:
            right += 1
        if right == pos:
            return False
        word += value[pos:right]
        if word.lower() in KEYWORDS:
            return True
        if not value.startswith("/*", right) or value.startswith("/*!", right):
            return False
        end = value.find("*/", right + 2)
        if end < 0:
            return False
        pos = end + 2
    return False
