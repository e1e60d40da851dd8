"""Request bodies read the way the application reads them, chosen by the
request's Content-Type, fed the de-chunked body as it arrives, with bounded
memory and work linear in the bytes fed.

Every parser hands out Parts: (raw text, whether "+" means a space), each later
decoded by normalize.decode_value and inspected alone, so an apostrophe in one
value cannot change how the next is read.

- application/x-www-form-urlencoded: every name and every value (a lone name
  can carry the payload: `1'+OR+'1'='1=asc`), plus=True. Attacks can also span
  parameters (servers join repeated ones), so windows over the raw body are
  inspected too, those that hold a "&" (a window without one lies inside one
  parameter, already inspected): today's whole-body value, bounded.
- multipart/*: python-multipart's streaming parser, part by part. The
  Content-Disposition parameters (name, filename, filename*...) and the other
  part header values are values; a field's content is one value; a file's
  content is sniffed (see "binary" below): binary contents are counted in
  `skipped`, text ones inspected in windows. A part typed JSON or XML is read
  by that parser. A body it cannot follow (no boundary, bad framing, a header
  section past its bounds, nothing before the end) is inspected as raw text
  windows from the block where it failed, as are the bytes held before the first
  part; the epilogue after the closing boundary, which servers drop, is
  inspected as text (unless binary): a server that disagrees about where the
  body ends must not be handed uninspected bytes.
- JSON (*json*): the standard library's json on a document of at most
  `max_buffer` bytes, every key and string value alone, escapes decoded, lone
  surrogates replaced with U+FFFD; duplicate keys all kept. A larger document,
  or one json refuses, goes through a linear scanner that reads the same strings
  (escapes decoded the same way; single-quoted strings too, as relaxed parsers
  such as Jackson's ALLOW_SINGLE_QUOTES or JSON5 read them) and switches to raw
  text windows at the first character JSON does not allow between strings.
  A NUL-led body is read as UTF-16/32 only if it starts like JSON in it.
- XML (*xml*): expat, fed incrementally, text runs and attribute values each
  alone, entities decoded by expat (comments and processing instructions are
  dropped, as the servers' parsers drop them). DTDs, entity declarations and
  external entities are refused (what defusedxml refuses, done on expat
  directly because the fallback needs expat's byte positions: no XXE, no
  billion laughs); a refusal, a syntax error, nesting past `max_depth` or more
  than `max_buffer` bytes without an event falls back to raw text windows from
  the last event.
- text/* and anything else: today's form reading (a value per parameter and
  windows over the raw text), except a body sniffed as binary whose type is
  not text, form, JSON or XML (octet-stream, image/*, none...).

What the binary skip may skip. A server framework hands a body to form parsing
by its declared type (PHP: urlencoded and multipart only; Express, Spring,
Django, Flask likewise unless configured with a catch-all type), and a
multipart part with a `filename` parameter to the application as a file, not
as a parameter. So only two things are ever skipped, and only when their first
`sniff` bytes look binary (a NUL, more than 10% control bytes, or invalid UTF-8
with more than 30% high bytes): a whole body whose type is neither text, form,
JSON nor XML, and the content of a multipart part that every server treats as
a file (one Content-Disposition, with a plain `filename` parameter, no
backslash and balanced quotes: a part whose header could be read as a field by
some server, e.g. `filename*` alone, is a field). A declared form, a field, a
JSON or XML body are never skipped, whatever their bytes. What is left open: a
server configured to parse any type as a form, sent binary-looking bytes first.

Bounds. body_parser cuts the body into fixed blocks of `block` bytes at fixed
offsets before any parser sees it, so what the parsers do (and the Parts) does
not depend on how TCP segmented the body, and expat (2.5 here, without reparse
deferral) rescans a pending token at most once per block. A value longer than
`max_value` is cut into windows overlapping by `overlap`, so each character is
inspected at most twice and an attack shorter than the overlap lies whole in
one window. `held` counts the bytes (characters) held right now: the block
being filled, windows being filled, a JSON document up to `max_buffer`, XML
bytes since the last event up to `max_buffer`, a part's headers, a sniff head.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from xml.parsers import expat

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser

Part = tuple[str, bool]  # raw text, and whether "+" means a space (as http.stream.Part)

MAX_BOUNDARY = 256  # python-multipart refuses longer ones (RFC 2046: 70)


@dataclass(frozen=True)
class BodyLimits:
    max_value: int = 8192  # chars of one value fed to detectors at once (windows past it)
    max_buffer: int = 65536  # bytes a parser may hold (a JSON document, XML since an event)
    overlap: int = 512  # chars shared by consecutive windows of one value
    block: int = 4096  # bytes the parsers are fed at a time
    sniff: int = 1024  # bytes looked at to tell binary content from text
    max_depth: int = 256  # XML element nesting
    part_headers: int = 16  # header lines in one multipart part
    part_header_size: int = 4096  # bytes of one multipart part header line

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.max_value:
            raise ValueError("BodyLimits: need 0 <= overlap < max_value")
        if min(self.max_buffer, self.block, self.sniff, self.max_depth, self.part_headers,
               self.part_header_size) < 1:
            raise ValueError("BodyLimits: every bound must be positive")


class BodyParser(Protocol):
    kind: str  # "form", "multipart", "json", "xml", "text", "binary": for metrics/EVE

    def feed(self, data: bytes) -> list[Part]:
        """Values complete so far."""
        ...

    def finish(self, cut: bool) -> list[Part]:
        """The rest, at the end of the body (cut: stopped at a limit or the
        connection's end, so it may be incomplete)."""
        ...

    @property
    def held(self) -> int:
        """Bytes held right now (to be charged to the flow's memory budget)."""
        ...

    @property
    def skipped(self) -> int:
        """Body bytes not fed to text detectors (binary file contents)."""
        ...

    @property
    def fallback(self) -> str:
        """Why the body is (partly) read as raw text: "" (it is not),
        "boundary", "framing", "preamble", "syntax", "refused", "depth",
        "too_big"; "streamed": a JSON document too big for json, scanned."""
        ...


def body_parser(content_type: str, limits: BodyLimits | None = None) -> BodyParser:
    """The parser for a request body of this Content-Type ("" when absent)."""
    limits = limits or BodyLimits()
    return _Blocks(_choose(content_type, limits), limits.block)


def _choose(content_type: str, limits: BodyLimits) -> BodyParser:
    mime, params = header_params(content_type)
    top, _, sub = mime.partition("/")
    if mime == "application/x-www-form-urlencoded":
        return _Form(limits, "form")
    if top == "multipart":
        bounds = [value for name, value in params if name == "boundary"]
        if len(bounds) == 1 and 0 < len(bounds[0]) <= MAX_BOUNDARY:
            return _Multipart(bounds[0].encode("latin-1", "replace"), limits)
        return _Text(limits, "multipart", fallback="boundary")  # none, or which one?
    if "json" in sub:
        return _Json(limits)
    if "xml" in sub:
        return _Xml(limits)
    if top == "text":
        return _Form(limits, "text")
    return _Sniffed(limits, lambda: _Form(limits, "text"))


# -- header parameters ---------------------------------------------------------------------
_PARAM = re.compile(r'\s*([^\s=;"]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"?|[^;]*))?\s*;?', re.S)
_QUOTED = re.compile(r"\\(.)", re.S)


def header_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """`type/sub; a=1; b="x;y"` -> ("type/sub", [("a", "1"), ("b", "x;y")]):
    the first item lowercased, every parameter in order (repeats kept), names
    lowercased, quotes and backslash escapes undone. One linear pass (the
    stdlib's and python-multipart's splitters rescan quoted runs)."""
    head, _, rest = value.partition(";")
    params = []
    for match in _PARAM.finditer(rest):
        name, raw = match.group(1), match.group(2)
        if not name and raw is None:
            continue
        raw = (raw or "").strip()
        if raw.startswith('"'):
            raw = _QUOTED.sub(r"\1", raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:])
        params.append((name.lower(), raw))
    return head.strip().lower(), params


# A part Content-Type that is only structure (inspected as a value otherwise: PHP
# hands it to the application as $_FILES[...]["type"]).
_PLAIN_MEDIA = re.compile(r'[\w.+-]+/[\w.+-]+(?:\s*;\s*[\w.-]+=(?:"[\w .:/=+-]*"|[\w.:/=+-]+))*\s*')


# -- binary sniffing -----------------------------------------------------------------------
_CONTROL = bytes(range(0x20)) + b"\x7f"
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL or b in b"\t\n\r\x0b\x0c\x1b")
_NOT_HIGH = bytes(range(0x80))


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of some content are binary, not text: a NUL,
    more than 10% control bytes, or invalid UTF-8 with more than 30% of bytes
    >= 0x80 (Latin-1 text has far fewer; compressed or random data ~50%)."""
    if not head:
        return False
    if b"\0" in head:
        return True
    if len(head.translate(None, _NOT_CONTROL)) * 10 > len(head):
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, False)  # a cut last char is fine
        return False
    except UnicodeDecodeError:
        return len(head.translate(None, _NOT_HIGH)) * 10 > len(head) * 3


# -- windows -------------------------------------------------------------------------------
class _Windows:
    """One value as it grows: a value of at most `max_value` chars is one
    Part; a longer one is cut into windows of `max_value` chars starting every
    `max_value - overlap` chars, the last one reaching its end. Holds at most
    one window; each char is copied a bounded number of times."""

    __slots__ = ("size", "step", "plus", "pieces", "length", "cut")

    def __init__(self, limits: BodyLimits, plus: bool) -> None:
        self.size = limits.max_value
        self.step = limits.max_value - limits.overlap
        self.plus = plus
        self.pieces: list[str] = []
        self.length = 0
        self.cut = False  # a window of this value was emitted

    def add(self, text: str) -> list[Part]:
        if not text:
            return []
        self.pieces.append(text)
        self.length += len(text)
        if self.length <= self.size:
            return []
        run, out, start = "".join(self.pieces), [], 0
        while len(run) - start > self.size:
            out.append((run[start:start + self.size], self.plus))
            start += self.step
        rest = run[start:]
        self.pieces, self.length, self.cut = [rest], len(rest), True
        return out

    def end(self, drop_blank: bool = False) -> list[Part]:
        """The value's last window (or the whole value), and start anew."""
        run = "".join(self.pieces)
        self.pieces, self.length, self.cut = [], 0, False
        if not run or drop_blank and run.isspace():
            return []
        return [(run, self.plus)]


def _value_parts(text: str, limits: BodyLimits, plus: bool) -> list[Part]:
    windows = _Windows(limits, plus)
    return windows.add(text) + windows.end()


# -- the parsers -------------------------------------------------------------------------------
class _Blocks:
    """What body_parser returns: feeds the parser inside fixed blocks at fixed
    offsets, so its calls (and the Parts) are the same however the body was
    split into segments."""

    __slots__ = ("_inner", "_block", "_buf")

    def __init__(self, inner: BodyParser, block: int) -> None:
        self._inner = inner
        self._block = block
        self._buf = bytearray()

    @property
    def kind(self) -> str:
        return self._inner.kind

    @property
    def held(self) -> int:
        return len(self._buf) + self._inner.held

    @property
    def skipped(self) -> int:
        return self._inner.skipped

    @property
    def fallback(self) -> str:
        return self._inner.fallback

    def feed(self, data: bytes) -> list[Part]:
        buf, block = self._buf, self._block
        if len(buf) + len(data) < block:
            buf += data
            return []
        out: list[Part] = []
        if buf:  # complete the block begun earlier
            take = block - len(buf)
            buf += data[:take]
            out += self._inner.feed(bytes(buf))
            buf.clear()
            data = data[take:]
        whole = len(data) - len(data) % block
        for start in range(0, whole, block):
            out += self._inner.feed(data[start:start + block])
        buf += data[whole:]
        return out

    def finish(self, cut: bool) -> list[Part]:
        rest = bytes(self._buf)
        self._buf.clear()
        out = self._inner.feed(rest) if rest else []
        return out + self._inner.finish(cut)


class _Text:
    """Raw text windows: the fallback, and the content of fields and text files."""

    __slots__ = ("kind", "fallback", "skipped", "_decoder", "_windows")

    def __init__(self, limits: BodyLimits, kind: str = "text", plus: bool = False,
                 encoding: str = "latin-1", fallback: str = "") -> None:
        self.kind = kind
        self.fallback = fallback
        self.skipped = 0
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._windows = _Windows(limits, plus)

    @property
    def held(self) -> int:
        return self._windows.length + len(self._decoder.getstate()[0])

    def feed(self, data: bytes) -> list[Part]:
        return self._windows.add(self._decoder.decode(data))

    def finish(self, cut: bool) -> list[Part]:
        return self._windows.add(self._decoder.decode(b"", True)) + self._windows.end(True)


_PLAIN_NAME = re.compile(r"[\w.\[\]-]*")  # a=, a.b=, a[]=, a-b=: how forms name fields


class _Form:
    """application/x-www-form-urlencoded, split at "&" and "=" as it arrives.
    A pair whose name is not a plain field name is also inspected whole: the
    payload may straddle the "=" (`1'+OR+'1'='1=asc`)."""

    __slots__ = ("kind", "fallback", "skipped", "_limits", "_name", "_value", "_pair", "_raw",
                 "_in_value")

    def __init__(self, limits: BodyLimits, kind: str) -> None:
        self.kind = kind
        self.fallback = ""
        self.skipped = 0
        self._limits = limits
        self._name = _Windows(limits, True)
        self._value = _Windows(limits, True)
        self._pair: _Windows | None = None  # name=value, when the name is odd
        self._raw = _Windows(limits, True)  # the whole body, for attacks across parameters
        self._in_value = False

    @property
    def held(self) -> int:
        pair = self._pair.length if self._pair else 0
        return self._name.length + self._value.length + self._raw.length + pair

    def feed(self, data: bytes) -> list[Part]:
        text = data.decode("latin-1")
        return [p for p in self._raw.add(text) if "&" in p[0]] + self._scan(text)

    def finish(self, cut: bool) -> list[Part]:
        return self._param_end() + [p for p in self._raw.end() if "&" in p[0]]

    def _scan(self, text: str) -> list[Part]:
        out: list[Part] = []
        pos, size = 0, len(text)
        while True:
            amp = text.find("&", pos)
            end = size if amp < 0 else amp
            if not self._in_value:
                eq = text.find("=", pos, end)
                if eq >= 0:
                    out += self._name.add(text[pos:eq]) + self._name_end()
                    self._in_value, pos = True, eq + 1
            piece = text[pos:end]
            out += (self._value if self._in_value else self._name).add(piece)
            if self._pair is not None:
                out += self._pair.add(piece)
            if amp < 0:
                return out
            out += self._param_end()
            pos = amp + 1

    def _name_end(self) -> list[Part]:
        name = self._name
        if not name.cut and name.length and not _PLAIN_NAME.fullmatch(joined := "".join(
                name.pieces)):
            self._pair = _Windows(self._limits, True)
            self._pair.add(joined + "=")
        return name.end()

    def _param_end(self) -> list[Part]:
        self._in_value = False
        pair, self._pair = self._pair, None
        return self._name.end() + self._value.end() + (pair.end() if pair else [])


class _Sniffed:
    """Content that is skipped if its first `sniff` bytes look binary, and
    read by `make()` otherwise."""

    __slots__ = ("_limits", "_make", "_head", "_inner", "_binary", "_skipped")

    def __init__(self, limits: BodyLimits, make: Callable[[], BodyParser]) -> None:
        self._limits = limits
        self._make = make
        self._head = bytearray()
        self._inner: BodyParser | None = None
        self._binary = False
        self._skipped = 0

    @property
    def kind(self) -> str:
        return "binary" if self._binary else self._inner.kind if self._inner else "text"

    @property
    def held(self) -> int:
        return len(self._head) + (self._inner.held if self._inner else 0)

    @property
    def skipped(self) -> int:
        return self._skipped

    @property
    def fallback(self) -> str:
        return self._inner.fallback if self._inner else ""

    def feed(self, data: bytes) -> list[Part]:
        if self._binary:
            self._skipped += len(data)
            return []
        if self._inner is not None:
            return self._inner.feed(data)
        self._head += data
        return self._decide() if len(self._head) >= self._limits.sniff else []

    def finish(self, cut: bool) -> list[Part]:
        out = self._decide() if not self._binary and self._inner is None else []
        return out + self._inner.finish(cut) if self._inner is not None else out

    def _decide(self) -> list[Part]:
        head = bytes(self._head)
        self._head = bytearray()
        if looks_binary(head[:self._limits.sniff]):
            self._binary, self._skipped = True, self._skipped + len(head)
            return []
        self._inner = self._make()
        return self._inner.feed(head)


# -- JSON --------------------------------------------------------------------------------------
class _Pairs(list):  # an object's (key, value) pairs in order, duplicate keys kept
    __slots__ = ()


def _number(_text: str) -> int:
    return 0  # numbers carry no text; skipping int() also skips its cost on long digit runs


_LONE = re.compile("[\ud800-\udfff]")  # a surrogate json left alone (pairs it joins)


def json_encoding(doc: bytes) -> str:
    """json's guess from the NULs in the first bytes (RFC 4627: UTF-16 and
    -32 too), kept only if the first character could start JSON: any other
    NUL-led body is read as UTF-8, as servers read what is not JSON."""
    encoding = json.detect_encoding(doc)
    if encoding.startswith("utf-8"):
        return encoding
    first = doc[:4].decode(encoding, "replace")[:1]
    return encoding if first and first in ' \t\r\n{["-0123456789tfn\ufeff' else "utf-8"


def json_strings(doc: bytes) -> list[str] | None:
    """Every key and string value of a JSON document, in document order, or
    None if the standard library's json refuses it."""
    try:
        text = doc.decode(json_encoding(doc), "replace")
        tree = json.loads(text, object_pairs_hook=_Pairs, parse_int=_number,
                          parse_float=_number, parse_constant=_number)
    except (ValueError, RecursionError):  # RecursionError: nesting past the interpreter's limit
        return None
    out, stack = [], [tree]
    while stack:  # depth-first without recursion
        node = stack.pop()
        if isinstance(node, str):
            if node:
                out.append(_LONE.sub("\ufffd", node))
        elif isinstance(node, _Pairs):
            for key, value in reversed(node):
                stack += (value, key)
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return out


class _Json:
    """json on a document within max_buffer; a bigger one, or one json refuses,
    through the scanner."""

    kind = "json"
    skipped = 0

    __slots__ = ("_limits", "_doc", "_scan", "_reason")

    def __init__(self, limits: BodyLimits) -> None:
        self._limits = limits
        self._doc = bytearray()
        self._scan: _JsonScanner | None = None
        self._reason = ""

    @property
    def held(self) -> int:
        return len(self._doc) + (self._scan.held if self._scan else 0)

    @property
    def fallback(self) -> str:
        return self._scan.fallback or self._reason if self._scan else ""

    def feed(self, data: bytes) -> list[Part]:
        if self._scan is not None:
            return self._scan.feed(data)
        self._doc += data
        return self._scanner("streamed") if len(self._doc) > self._limits.max_buffer else []

    def finish(self, cut: bool) -> list[Part]:
        out: list[Part] = []
        if self._scan is None:
            strings = json_strings(bytes(self._doc))
            if strings is not None or self._doc.isspace() or not self._doc:
                self._doc = bytearray()
                return [p for s in strings or () for p in _value_parts(s, self._limits, False)]
            out = self._scanner("syntax")
        return out + self._scan.finish(cut) if self._scan is not None else out

    def _scanner(self, reason: str) -> list[Part]:
        doc = bytes(self._doc)
        self._doc = bytearray()
        self._scan, self._reason = _JsonScanner(self._limits, json_encoding(doc)), reason
        return self._scan.feed(doc)


# What JSON allows between strings (NaN and Infinity too: Python's json takes them).
_JSON_BETWEEN = re.compile(r"[\s\[\]{},:0-9eE.+\-truefalsnNIiy]*")
_JSON_PLAIN = {'"': re.compile(r'[^"\\]*'), "'": re.compile(r"[^'\\]*")}
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                 "t": "\t"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


class _JsonScanner:
    """The strings of a JSON text of any size, one pass: keys and values
    alike, escapes decoded as json decodes them. Lenient like the relaxed
    parsers some servers run (Jackson's ALLOW_SINGLE_QUOTES, JSON5): strings
    in single quotes too, an unknown escape gives the escaped character. At
    the first character JSON does not allow between strings it reads the rest
    as raw text windows, starting `overlap` characters before it."""

    __slots__ = ("_limits", "_decoder", "_value", "_quote", "_carry", "_high", "_raw",
                 "_tail", "_before", "fallback")

    def __init__(self, limits: BodyLimits, encoding: str) -> None:
        self._limits = limits
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._value = _Windows(limits, False)
        self._quote = ""  # the quote of the string being read; "" between strings
        self._carry = ""  # an escape cut by the end of a feed
        self._high = ""  # a high surrogate waiting for its low half
        self._raw: _Windows | None = None
        self._tail = ""  # the last `overlap` characters read
        self._before = ""  # the same before the text being scanned
        self.fallback = ""

    @property
    def held(self) -> int:
        raw = self._raw.length if self._raw else 0
        return (self._value.length + raw + len(self._tail) + len(self._before) + len(self._carry)
                + len(self._decoder.getstate()[0]))  # + a character cut by the feed

    def feed(self, data: bytes) -> list[Part]:
        return self._read(self._decoder.decode(data))

    def finish(self, cut: bool) -> list[Part]:
        out = self._read(self._decoder.decode(b"", True))
        self._tail = self._before = ""
        if self._raw is not None:
            return out + self._raw.end(True)
        out += self._value.add(self._carry)  # an escape the body cut: as it was
        self._carry = ""
        return out + self._flush_high() + self._value.end()

    def _read(self, text: str) -> list[Part]:
        if self._raw is not None:
            return self._raw.add(text)
        keep = self._limits.overlap
        self._before = self._tail
        self._tail = text[-keep:] if len(text) >= keep else (self._tail + text)[-keep:]
        return self._scan(self._carry + text) if self._carry else self._scan(text)

    def _scan(self, s: str) -> list[Part]:
        self._carry = ""
        out: list[Part] = []
        i, size = 0, len(s)
        while i < size:
            if not self._quote:
                i = _JSON_BETWEEN.match(s, i).end()  # type: ignore[union-attr]
                if i == size:
                    break
                if s[i] not in "\"'":
                    return out + self._to_raw(s, i)
                self._quote, i = s[i], i + 1
                continue
            j = _JSON_PLAIN[self._quote].match(s, i).end()  # type: ignore[union-attr]
            if j > i:
                out += self._flush_high() + self._value.add(s[i:j])
                i = j
            if i == size:
                break
            if s[i] == self._quote:
                out += self._flush_high() + self._value.end()
                self._quote, i = "", i + 1
            else:
                i = self._escape(s, i, out)
                if i < 0:
                    break
        return out

    def _escape(self, s: str, i: int, out: list[Part]) -> int:
        """Decode the escape at s[i] ("\\"); the index after it, or -1 (kept
        in _carry) if s ends inside it."""
        if i + 1 >= len(s) or s[i + 1] == "u" and i + 6 > len(s):
            self._carry = s[i:]
            return -1
        char = s[i + 1]
        if char != "u" or not _HEX4.fullmatch(s, i + 2, i + 6):
            out += self._flush_high() + self._value.add(_JSON_ESCAPES.get(char, char))
            return i + 2
        code = int(s[i + 2:i + 6], 16)
        if 0xDC00 <= code <= 0xDFFF and self._high:  # the low half of a pair
            high, self._high = ord(self._high), ""
            out += self._value.add(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)))
        elif 0xD800 <= code <= 0xDBFF:
            out += self._flush_high()
            self._high = chr(code)
        else:
            lone = 0xD800 <= code <= 0xDFFF
            out += self._flush_high() + self._value.add("\ufffd" if lone else chr(code))
        return i + 6

    def _flush_high(self) -> list[Part]:
        if not self._high:
            return []
        self._high = ""
        return self._value.add("\ufffd")

    def _to_raw(self, s: str, i: int) -> list[Part]:
        """Not JSON from s[i] on: raw text windows, `overlap` characters of
        context before it included."""
        out = self._flush_high() + self._value.end()
        self.fallback = "syntax"
        self._raw = _Windows(self._limits, False)
        before = (self._before + s[:i])[-self._limits.overlap:] if self._limits.overlap else ""
        return out + self._raw.add(before + s[i:])


# -- XML ---------------------------------------------------------------------------------------
class _Refused(Exception):
    """A DTD, an entity declaration or an external entity: never expanded."""


def _refuse(*_args: object) -> None:
    raise _Refused


class _XmlStop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Xml:
    """expat, incrementally: text runs and attribute values each alone. Keeps
    the bytes since the last event (what expat has not reported on yet) for
    the fallback, at most max_buffer of them."""

    kind = "xml"
    skipped = 0

    __slots__ = ("_limits", "_parser", "_raw", "_base", "_mark", "_depth", "_text", "_out",
                 "_fallback", "fallback", "_seen")

    def __init__(self, limits: BodyLimits) -> None:
        self._limits = limits
        parser = expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        parser.CommentHandler = parser.ProcessingInstructionHandler = self._event
        # What defusedxml refuses (forbid_dtd, forbid_entities, forbid_external):
        parser.StartDoctypeDeclHandler = _refuse
        parser.EntityDeclHandler = _refuse
        parser.UnparsedEntityDeclHandler = _refuse
        parser.ExternalEntityRefHandler = _refuse
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.ordered_attributes = True
        self._parser = parser
        self._raw = bytearray()  # bytes from absolute offset _base on
        self._base = self._mark = 0  # _mark: where the last event began
        self._depth = 0
        self._text = _Windows(limits, False)
        self._out: list[Part] = []
        self._fallback: _Text | None = None
        self.fallback = ""
        self._seen = False

    @property
    def held(self) -> int:
        own = len(self._raw) + self._text.length
        return own + self._fallback.held if self._fallback else own

    def feed(self, data: bytes) -> list[Part]:
        if self._fallback is not None:
            return self._fallback.feed(data)
        self._seen = self._seen or bool(data)
        self._raw += data
        try:
            self._parser.Parse(data, False)
        except (expat.ExpatError, _Refused, _XmlStop) as exc:
            return self._fail(exc)
        drop = self._mark - self._base
        if drop > 0:
            del self._raw[:drop]
            self._base = self._mark
        if len(self._raw) > self._limits.max_buffer:
            return self._fail(_XmlStop("too_big"))
        out, self._out = self._out, []
        return out

    def finish(self, cut: bool) -> list[Part]:
        if self._fallback is None and self._seen:
            try:
                self._parser.Parse(b"", True)
            except (expat.ExpatError, _Refused, _XmlStop) as exc:
                return self._fail(exc) + self._fallback.finish(cut)  # type: ignore[union-attr]
        self._raw = bytearray()
        if self._fallback is not None:
            return self._fallback.finish(cut)
        out, self._out = self._out + self._text.end(True), []
        return out

    def _fail(self, exc: Exception) -> list[Part]:
        reason = "refused" if isinstance(exc, _Refused) else getattr(exc, "reason", "syntax")
        self.fallback = reason
        out = self._out + self._text.end(True)
        self._out = []
        self._fallback = _Text(self._limits, "xml", fallback=reason)
        raw, self._raw = bytes(self._raw), bytearray()
        return out + self._fallback.feed(raw)

    def _event(self, *_args: object) -> None:
        self._mark = self._parser.CurrentByteIndex

    def _start(self, _name: str, attrs: list[str]) -> None:
        self._mark = self._parser.CurrentByteIndex
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise _XmlStop("depth")
        out = self._out
        out += self._text.end(True)
        for value in attrs[1::2]:
            if value:
                out += _value_parts(value, self._limits, False)

    def _end(self, _name: str) -> None:
        self._mark = self._parser.CurrentByteIndex
        self._depth -= 1
        self._out += self._text.end(True)

    def _chars(self, data: str) -> None:
        self._mark = self._parser.CurrentByteIndex
        self._out += self._text.add(data)


# -- multipart ---------------------------------------------------------------------------------
class _Quiet:
    """python-multipart logs a warning per malformed body: an attacker's
    log flood on the packet path. Its parser gets this logger instead."""

    def warning(self, *_args: object, **_kwargs: object) -> None:
        return None

    debug = info = error = warning


_QUIET = _Quiet()


class _Multipart:
    """python-multipart's streaming parser, part by part (see the module doc)."""

    kind = "multipart"

    __slots__ = ("_limits", "_boundary", "_parser", "_out", "_headers", "_field", "_value",
                 "_child", "_started", "_ended", "_pre", "_tail", "_epilogue", "_fallback",
                 "_skipped", "fallback")

    def __init__(self, boundary: bytes, limits: BodyLimits) -> None:
        self._limits = limits
        self._boundary = boundary
        self._out: list[Part] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()  # the header line being read: name, value
        self._value = bytearray()
        self._child: BodyParser | None = None  # the current part's content
        self._started = self._ended = False
        self._pre = bytearray()  # the body until the first part begins
        self._tail = b""  # the end of the last block: the closing delimiter may straddle
        self._epilogue: BodyParser | None = None
        self._fallback: _Text | None = None
        self._skipped = 0
        self.fallback = ""
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done, "on_part_data": self._part_data,
            "on_part_end": self._on_part_end, "on_end": self._end,
        }, max_header_count=limits.part_headers, max_header_size=limits.part_header_size)
        self._parser.logger = _QUIET  # type: ignore[assignment]

    @property
    def held(self) -> int:
        own = len(self._pre) + len(self._field) + len(self._value) + len(self._tail)
        own += sum(len(v) for _, v in self._headers)
        for inner in (self._child, self._epilogue, self._fallback):
            own += inner.held if inner is not None else 0
        return own

    @property
    def skipped(self) -> int:
        child = self._child.skipped if self._child is not None else 0
        epilogue = self._epilogue.skipped if self._epilogue is not None else 0
        return self._skipped + child + epilogue

    def feed(self, data: bytes) -> list[Part]:
        if self._fallback is not None:
            return self._fallback.feed(data)
        if self._epilogue is not None:
            return self._epilogue.feed(data)
        if not self._started:
            self._pre += data
        try:
            self._parser.write(data)
        except FormParserError:
            return self._fail(data, "framing")
        if self._started:
            self._pre.clear()
        elif len(self._pre) > self._limits.max_buffer:
            return self._fail(data, "preamble")
        out, self._out = self._out, []
        if self._ended:
            out += self._after_end(data)
        else:
            closing = len(self._boundary) + 3
            self._tail = data[-closing:] if len(data) >= closing else (self._tail + data)[-closing:]
        return out

    def finish(self, cut: bool) -> list[Part]:
        out: list[Part] = []
        self._tail = b""
        if self._fallback is None and self._epilogue is None and not self._started and self._pre:
            out = self._fail(b"", "framing")  # nothing but bytes before any part
        self._pre = bytearray()  # (a closing delimiter with no part before it: nothing held)
        for inner in (self._fallback, self._epilogue):
            if inner is not None:
                return out + inner.finish(cut)
        return self._part_end() + self._header_parts()  # a body cut inside a part

    def _fail(self, data: bytes, reason: str) -> list[Part]:
        """The framing is lost: raw text from the bytes before the first part,
        or from the block where it failed."""
        out = self._out + self._header_parts() + self._part_end()
        self._out = []
        self.fallback = reason
        self._fallback = _Text(self._limits, "multipart", fallback=reason)
        raw = bytes(self._pre) or data
        self._pre = bytearray()
        return out + self._fallback.feed(raw)

    def _after_end(self, data: bytes) -> list[Part]:
        """Past the closing delimiter: the epilogue, as text unless binary."""
        closing = b"--" + self._boundary + b"--"
        joined = self._tail + data
        at = joined.find(closing)
        start = max(at + len(closing) - len(self._tail), 0) if at >= 0 else 0
        self._tail = b""
        self._epilogue = _Sniffed(self._limits, lambda: _Text(self._limits, "multipart"))
        return self._epilogue.feed(data[start:])

    # python-multipart callbacks
    def _part_begin(self) -> None:
        self._started = True
        self._out += self._part_end()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field).lower(), bytes(self._value)))
        self._field, self._value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        headers = [(name, value.decode("utf-8", "replace")) for name, value in self._headers]
        self._out += self._header_parts()
        disposition = [value for name, value in headers if name == b"content-disposition"]
        ctype = [value for name, value in headers if name == b"content-type"]
        is_file = False
        if len(disposition) == 1:
            text = disposition[0]
            names = [name for name, _ in header_params(text)[1]]
            is_file = "filename" in names and "\\" not in text and text.count('"') % 2 == 0
        mime = header_params(ctype[0])[0] if len(ctype) == 1 else ""
        self._child = self._content_parser(mime, is_file)

    def _content_parser(self, mime: str, is_file: bool) -> BodyParser:
        sub = mime.partition("/")[2]
        if "json" in sub:
            return _Json(self._limits)
        if "xml" in sub:
            return _Xml(self._limits)
        def text() -> BodyParser:
            return _Text(self._limits, "multipart", encoding="utf-8")
        return _Sniffed(self._limits, text) if is_file else text()

    def _header_parts(self) -> list[Part]:
        """A part's user-controlled header text: every Content-Disposition
        parameter (name, filename, filename*...), the Content-Type unless it is
        plain structure, every other header's value; and a header line cut."""
        out: list[Part] = []
        for name, raw in self._headers:
            value = raw.decode("utf-8", "replace")
            if name == b"content-disposition":
                for _, param in header_params(value)[1]:
                    out += _value_parts(param, self._limits, False) if param else []
            elif name != b"content-type" or not _PLAIN_MEDIA.fullmatch(value):
                out += _value_parts(value, self._limits, False) if value else []
        for cut in (self._field, self._value):
            if cut:
                out += _value_parts(cut.decode("utf-8", "replace"), self._limits, False)
        self._headers, self._field, self._value = [], bytearray(), bytearray()
        return out

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._child is not None:
            self._out += self._child.feed(data[start:end])

    def _part_end(self) -> list[Part]:
        child, self._child = self._child, None
        if child is None:
            return []
        out = child.finish(False)
        self._skipped += child.skipped
        return out

    def _on_part_end(self) -> None:
        self._out += self._part_end()

    def _end(self) -> None:
        self._out += self._part_end()
        self._ended = True
