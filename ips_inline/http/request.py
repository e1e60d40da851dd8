"""One HTTP request as the server will read it: the request line and header
fields parsed leniently (what common servers accept, the engine accepts too),
and the parts of it an attacker controls, each to be inspected on its own.

Parts (`Part`: raw text, and whether "+" means a space when decoding it):
the path; every query parameter's name and value, and the whole query
(attacks can span parameters); every cookie's name and value, and the whole
cookie; every header value, except those whose value is well-formed for a
header of fixed grammar (`Accept: text/html,*/*;q=0.8` carries nothing, and
skipping it avoids false positives): a value that does not fit its grammar is
inspected like any other (`Accept-Language: ../../etc/passwd`). Lines of the
head that are not header fields are inspected as they are. Values longer than
`MAX_VALUE` are cut into overlapping windows, so every regex and libinjection
call stays bounded and nothing is skipped.
"""

from __future__ import annotations

import re

from .normalize import decode_value, fold

Part = tuple[str, bool]  # raw text, and whether "+" means a space when decoding it

_WS = " \t\r\n\x0b\x0c"  # ASCII white space (bytes.strip()'s set)
MAX_VALUE = 8192  # characters of one value handed to the detectors at once
WINDOW_OVERLAP = 1024  # ... consecutive windows of a longer value overlap this much
_GRAMMAR_MAX = 512  # longer values are always inspected

# Header grammars are narrower than RFC 9110 allows on purpose: a value they
# accept is never inspected, so they admit only the characters real values
# use. RFC tokens may hold ' | ` & $ ! # ~ ^, the stuff of injections that CGI
# hands on to programs as HTTP_* variables: a value using them is inspected.
_WORD = r"[A-Za-z0-9._-]+"
_QVALUE = r"(?:\s*;\s*q\s*=\s*[0-9.]{1,5})?"
_PARAM = (r"(?:\s*;\s*" + _WORD + r"\s*=\s*(?:[A-Za-z0-9._+/=-]+"
          r"|\"[A-Za-z0-9 ._+/=:,()?-]{0,70}\"))")


def _list_of(item: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{item})(?:\s*,\s*(?:{item}))*")


_MTYPE = r"[A-Za-z][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*"
_MEDIA_RANGE = r"(?:\*/\*|[A-Za-z][A-Za-z0-9.+-]*/\*|" + _MTYPE + ")" + _PARAM + "*"
_DATE = r"[A-Za-z]{3},? [0-9A-Za-z :-]{10,40}"
# An entity tag as servers make them: hex or base64 with a digit in it.
_ETAG = r"(?:W/)?\"(?=[^\"]{0,128}[0-9])[A-Za-z0-9+/=._:-]{1,128}\"|\*"
# Headers whose value has a fixed grammar: a value that matches it is no attack
# surface. Everything else, and any value that does not match, is inspected.
# One exception is known and tested (test_http_clean.py): the media range
# `type/*` of Accept, which libinjection reads as a number and a comment.
_GRAMMARS: dict[str, re.Pattern[str]] = {
    "host": re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"),
    "content-length": re.compile(r"[0-9]{1,18}"),
    "content-type": re.compile(_MTYPE + _PARAM + "*"),
    "accept": _list_of(_MEDIA_RANGE),
    "accept-encoding": _list_of(r"(?:\*|[A-Za-z0-9_-]+)" + _QVALUE),
    "accept-language": _list_of(r"(?:\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)" + _QVALUE),
    "accept-charset": _list_of(r"(?:\*|[A-Za-z0-9._:-]+)" + _QVALUE),
    "te": _list_of(r"[A-Za-z-]+" + _QVALUE),
    "connection": _list_of(_WORD),
    "upgrade": _list_of(_WORD + r"(?:/[A-Za-z0-9.-]+)?"),
    "transfer-encoding": _list_of(_WORD),
    "cache-control": _list_of(_WORD + r"(?:=(?:[0-9A-Za-z_-]+|\"[A-Za-z0-9, -]{0,64}\"))?"),
    "pragma": _list_of(_WORD),
    "upgrade-insecure-requests": re.compile(r"[01]"),
    "dnt": re.compile(r"[01]"),
    "sec-gpc": re.compile(r"[01]"),
    "sec-fetch-site": re.compile(r"[a-z-]{1,16}"),
    "sec-fetch-mode": re.compile(r"[a-z-]{1,16}"),
    "sec-fetch-dest": re.compile(r"[a-z-]{1,16}"),
    "sec-fetch-user": re.compile(r"\?[01]"),
    "sec-ch-ua-mobile": re.compile(r"\?[01]"),
    "priority": _list_of(r"[a-z](?:=[0-9?a-z]{1,3})?"),
    "if-modified-since": re.compile(_DATE),
    "if-unmodified-since": re.compile(_DATE),
    "if-none-match": _list_of(_ETAG),
    "if-match": _list_of(_ETAG),
    "expect": re.compile(r"100-continue", re.I),
    "keep-alive": _list_of(r"[a-z]+=[0-9]{1,6}"),
    "origin": re.compile(r"null|[a-z][a-z0-9+.-]{0,15}://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?"),
}


def well_formed(name: str, value: str) -> bool:
    """Whether a header value fits its header's fixed grammar. A `--` is
    SQL's comment (`1--` cuts a query) and no grammar's business, except in
    a multipart boundary."""
    grammar = _GRAMMARS.get(name)
    if grammar is None or len(value) > _GRAMMAR_MAX or "--" in value and name != "content-type":
        return False
    return bool(grammar.fullmatch(value))


def windows(text: str, plus: bool, size: int = MAX_VALUE,
            overlap: int = WINDOW_OVERLAP) -> list[Part]:
    """A value as detector-sized parts: whole if short, else overlapping windows."""
    if len(text) <= size:
        return [(text, plus)]
    step = size - overlap
    return [(text[i:i + size], plus) for i in range(0, len(text) - overlap, step)]


_INERT = re.compile(r"[A-Za-z0-9_.\-]*").fullmatch


def inert(text: str) -> bool:
    """A value no payload detector can fire on: ASCII letters, digits and
    `_ - .` only (no quote, bracket, slash, percent, entity, operator or white
    space), no `..` step, no `.ini` name and no `--` (SQL's comment: `id=1--`
    cuts the rest of the server's query). Most parameter names, numbers, ids
    and tokens are; skipping them skips their decoding and detectors."""
    if not _INERT(text) or "--" in text:
        return False
    return "." not in text or ".." not in text and ".ini" not in text.lower()


def param_parts(query: str, plus: bool = True) -> list[Part]:
    """`a=1&b=2`: every name and value (a lone name can carry the payload,
    `?1'+OR+'1'='1=asc`), and the whole string (attacks span parameters)."""
    if not query:
        return []
    out: list[Part] = []
    big = len(query) > MAX_VALUE
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        if name:
            out += windows(name, plus) if big else [(name, plus)]
        if sep and value:
            out += windows(value, plus) if big else [(value, plus)]
    if "&" in query or "=" in query:
        out += windows(query, plus)
    return out


def cookie_parts(value: str) -> list[Part]:
    out: list[Part] = []
    big = len(value) > MAX_VALUE
    for piece in value.split(";"):
        name, sep, val = piece.strip(_WS).partition("=")
        if name:
            out += windows(name, False) if big else [(name, False)]
        if sep and val:
            out += windows(val, False) if big else [(val, False)]
    return out + windows(value, False)


def strip_version(target: str) -> tuple[str, str]:
    """(target, version) of what follows the method: a trailing
    `<white space>HTTP/d[.d]` is the version (servers accept raw spaces
    inside targets: those stay in the target)."""
    before, sep, version = target.rpartition("HTTP/")
    if not sep:
        before, sep, version = target.rpartition("http/")
    if sep and not before and len(version) == 3 and version[0].isdigit() \
            and version[1] == "." and version[2].isdigit():
        return "", "HTTP/" + version  # `OPTIONS HTTP/1.1`: no target at all
    if (sep and before and before[-1] in _WS and len(version) in (1, 3)
            and version[0] in "0123456789"
            and (len(version) == 1 or version[1] == "." and version[2] in "0123456789")):
        return before.rstrip(_WS), "HTTP/" + version
    return target, ""


class HttpRequest:
    """A request's head, parsed once, its body as far as kept (`body`, at most
    the stream's max_body bytes, for rules and EVE), and the parts the payload
    detectors are looking at now (`select`): values are decoded on first use,
    `values` as the application sees them, `folded` for pattern matching."""

    __slots__ = ("head", "method", "target", "version", "request_line", "fields", "headers",
                 "body", "body_cut", "length", "content_type", "parts", "_values", "_folded",
                 "inspected", "_stray", "body_kind", "body_skipped")

    def __init__(self, head: bytes, body: bytes = b"", truncated: bool = False) -> None:
        self.head = head
        text = head.decode("latin-1")
        line, _, rest = text.partition("\n")
        self.request_line = line.strip(_WS)
        method, _, target = self.request_line.partition(" ")
        self.method = method
        self.target, self.version = strip_version(target.strip(_WS))
        self.fields: list[tuple[str, str]] = []  # (name as sent, value), obs-fold unfolded
        self._stray: list[str] = []  # head lines that are no header field
        self._parse_fields(rest)
        self.headers = [(name.strip(_WS).lower(), value) for name, value in self.fields]
        self.body = bytearray(body)
        self.body_cut = truncated
        self.length = len(body)  # body bytes received (kept or not)
        self.content_type = self.header("content-type")
        self.body_kind = ""  # how the body was read (http/bodies.py), once it ended
        self.body_skipped = 0  # body bytes not fed to the detectors (binary file contents)
        self.parts: list[Part] = []
        self._values: list[str] | None = None
        self._folded: list[str] | None = None
        self.inspected = 0  # characters handed to detectors so far (the budget)

    def _parse_fields(self, rest: str) -> None:
        for raw in rest.split("\n"):
            line = raw.rstrip("\r")
            if line[:1] in (" ", "\t") and self.fields:  # obs-fold: a continuation line
                name, value = self.fields[-1]
                self.fields[-1] = (name, f"{value} {line.strip(_WS)}".strip(_WS))
                continue
            name, sep, value = line.partition(":")
            if sep and name.strip(_WS):
                self.fields.append((name, value.strip(_WS)))
            elif line.strip(_WS):
                self._stray.append(line)

    def header(self, name: str) -> str:
        """The first value of a header (name lowercased), or ""."""
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    # -- what the detectors inspect ---------------------------------------------------
    def head_parts(self) -> list[Part]:
        path, _, query = self.target.partition("?")
        parts = windows(path, False) + param_parts(query)
        for name, value in self.headers:
            if name == "cookie":
                parts += cookie_parts(value)
            elif value and not well_formed(name, value):
                parts += windows(value, False)
        for line in self._stray:
            parts += windows(line, False)
        return parts

    def select(self, parts: list[Part]) -> None:
        """Inspect these parts now."""
        self.parts, self._values, self._folded = parts, None, None

    @property
    def values(self) -> list[str]:
        if self._values is None:
            self._values = [decode_value(raw, plus) for raw, plus in self.parts]
        return self._values

    @property
    def folded(self) -> list[str]:
        if self._folded is None:
            self._folded = [fold(v) for v in self.values]
        return self._folded

    # -- what rules and EVE read ----------------------------------------------------------
    @property
    def user_agent(self) -> str:
        return self.header("user-agent")

    @property
    def host(self) -> str:
        return self.header("host")
