"""HTTP request reassembly: recognise a request by its content (any port),
buffer its head and body within bounds, and hand out complete requests.

Only the connection initiator's stream is parsed; responses never are.
"""

from __future__ import annotations

import re

from .normalize import decode_value, fold, param_parts

_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
            b"CONNECT ", b"TRACE ", b"PROPFIND ")
_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d+)", re.I | re.M)
# Chunked wins over Content-Length (RFC 9112 6.3), as in the servers we protect.
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:[^\n]*\bchunked\b", re.I | re.M)
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9a-fA-F]{1,8})[ \t]*(;[^\n]*)?$")
_WS = " \t\r\n\x0b\x0c"  # what bytes.strip() and a bytes \s strip: ASCII white space
_LINE_MAX = 4096  # a chunk-size or trailer line longer than this is not HTTP
# Headers whose values are structure, not user data: skipping them avoids
# false positives (Accept: */*, Content-Type: ...; charset=...).
_STRUCTURAL = frozenset(("host", "content-length", "content-type", "accept", "accept-encoding",
                         "accept-language", "connection", "cache-control", "pragma",
                         "upgrade-insecure-requests", "te", "if-modified-since", "if-none-match",
                         "origin", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest"))


def looks_like_http(data: bytes) -> bool:
    return data.startswith(_METHODS) or any(m.startswith(data) for m in _METHODS if data)


def _strip_version(target: str) -> str:
    """The request target without a trailing `<white space>HTTP/d[.d]`
    (servers accept raw spaces inside targets: those stay)."""
    before, sep, version = target.rpartition("HTTP/")
    if (sep and before and before[-1] in _WS and len(version) in (1, 3)
            and version[0] in "0123456789"
            and (len(version) == 1 or version[1] == "." and version[2] in "0123456789")):
        return before.rstrip(_WS)
    return target


def head_end(buf: bytes, limit: int) -> tuple[int, int] | None:
    """Where the first blank line (LF LF or LF CR LF, a CR before the first
    LF included) starts and ends within buf[:limit], or None."""
    lf_lf, lf_crlf = buf.find(b"\n\n", 0, limit), buf.find(b"\n\r\n", 0, limit)
    if lf_lf < 0 and lf_crlf < 0:
        return None
    if lf_crlf < 0 or 0 <= lf_lf < lf_crlf:
        first, end = lf_lf, lf_lf + 2
    else:
        first, end = lf_crlf, lf_crlf + 3
    return (first - 1 if first and buf[first - 1] == 13 else first), end


Part = tuple[str, bool]  # raw text, and whether "+" means a space when decoding it


class HttpRequest:
    """One request, decoded once for every payload detector. `parts` holds,
    undecoded, everything an attacker controls (path, parameters, cookies,
    free-text headers); `values` is each as the application will see it,
    `folded` the same for pattern matching (see normalize.fold). Both are
    computed on first use: the engine first drops the parts it already
    knows clean (http/clean.py), so repeats are neither decoded nor
    inspected."""

    __slots__ = ("head", "body", "truncated", "method", "target", "headers", "parts",
                 "_values", "_folded")

    def __init__(self, head: bytes, body: bytes, truncated: bool) -> None:
        self.head = head
        self.body = body
        self.truncated = truncated  # hit a buffer bound: inspected as far as it went
        line, _, rest = head.decode("latin-1").partition("\n")
        method, _, target = line.strip(_WS).partition(" ")
        self.method = method
        self.target = _strip_version(target)
        self.headers: list[tuple[str, str]] = []
        for raw in rest.split("\n"):
            name, sep, value = raw.partition(":")
            if sep:
                self.headers.append((name.strip(_WS).lower(), value.strip(_WS)))
        path, _, query = self.target.partition("?")
        self.parts: list[Part] = [(path, False), *_params(query), *self._body_parts(),
                                  *self._header_parts()]
        self._values: list[str] | None = None
        self._folded: list[str] | None = None

    def select(self, parts: list[Part]) -> None:
        """Inspect only these parts (a subset of `parts`)."""
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

    def _body_parts(self) -> list[Part]:
        """A urlencoded body's parameters; a JSON/XML/multipart body whole."""
        body = self.body.decode("latin-1")
        if not body:
            return []
        ctype = dict(self.headers).get("content-type", "")
        if "json" in ctype or "xml" in ctype or "multipart" in ctype:
            return [(body, False)]
        return _params(body)

    def _header_parts(self) -> list[Part]:
        out: list[Part] = []
        for name, value in self.headers:
            if name in _STRUCTURAL:
                continue
            if name == "cookie":
                out.extend(_params(value.replace(";", "&")))
            else:
                out.append((value, False))
        return out


def _params(query: str) -> list[Part]:
    """`a=1&b=2` -> the values; a bare token (no '=') counts as a value, and so
    does the whole string (attacks can span parameters)."""
    return [(raw, True) for raw in param_parts(query)]


class Dechunker:
    """Incremental de-chunking of one request body (Transfer-Encoding: chunked):
    raw bytes in, the decoded body kept up to `limit`. Servers hand the
    application the decoded body, so that is what the detectors must read.
    Only the decoded body is kept: chunk framing costs no buffer space."""

    __slots__ = ("head", "limit", "parts", "size", "left", "trailers", "done", "bad", "over")

    def __init__(self, head: bytes, limit: int) -> None:
        self.head = head
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0  # decoded bytes kept
        self.left = 0  # chunk data still to come; -1: the CRLF after it
        self.trailers = False  # past the last chunk: trailer lines up to an empty one
        self.done = self.bad = self.over = False

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def feed(self, buf: bytes) -> int:
        """Consume what it can of `buf`; returns how many bytes it used. Stops
        (done) at the body's end, on bad framing, or past the limit."""
        pos = 0
        while not self.done:
            if self.left > 0:
                piece = buf[pos:pos + self.left]
                if not piece:
                    break
                self._keep(piece)
                self.left -= len(piece)
                pos += len(piece)
                self.left = self.left or -1
                continue
            nl = buf.find(b"\n", pos, pos + _LINE_MAX)
            if nl < 0:
                if len(buf) - pos >= _LINE_MAX:
                    self._stop(bad=True)
                break
            self._line(buf[pos:nl].rstrip(b"\r"))
            pos = nl + 1
        return pos

    def _line(self, line: bytes) -> None:
        if self.left == -1:  # the line ending a chunk's data must be empty
            self.left = 0
            if line:
                self._stop(bad=True)
        elif self.trailers:
            if not line:
                self.done = True
        else:
            match = _CHUNK_SIZE.match(line)
            if match is None:
                self._stop(bad=True)
                return
            self.left = int(match.group(1), 16)
            self.trailers = self.left == 0

    def _keep(self, piece: bytes) -> None:
        room = self.limit - self.size
        if len(piece) > room:
            piece = piece[:room]
            self._stop(over=True)
        self.parts.append(piece)
        self.size += len(piece)

    def _stop(self, bad: bool = False, over: bool = False) -> None:
        self.done, self.bad, self.over = True, self.bad or bad, self.over or over


class HttpStream:
    """Buffers one connection's request stream and cuts it into requests."""

    __slots__ = ("buf", "max_head", "max_body", "dead", "requests", "chunked")

    def __init__(self, max_head: int, max_body: int) -> None:
        self.buf = b""
        self.max_head = max_head
        self.max_body = max_body
        self.dead = False  # stopped looking: not HTTP, or past a bound
        self.requests = 0  # complete requests cut so far
        self.chunked: Dechunker | None = None  # a chunked body in progress

    def feed(self, data: bytes) -> list[HttpRequest]:
        if self.dead:
            return []
        self.buf += data
        out = []
        while self.buf and not self.dead:  # a request cut at a bound ends the stream
            if self.chunked is None and not looks_like_http(self.buf[:10]):
                self.dead = True
                break
            req = self._next_request()
            if req is None:
                break
            out.append(req)
        self.requests += len(out)
        return out

    def _next_request(self) -> HttpRequest | None:
        if self.chunked is not None:
            return self._next_chunks()
        buf = self.buf
        end = head_end(buf, self.max_head + 4)
        if end is None:
            if len(buf) <= self.max_head:
                return None
            self.dead, self.buf = True, b""  # an endless head: inspect what we have, then stop
            return HttpRequest(buf[: self.max_head], b"", truncated=True)
        head_stop, body_start = end
        head = buf[:head_stop]
        lowered = head.lower()  # substring tests first: most heads have neither header
        if b"transfer-encoding" in lowered and _CHUNKED.search(head):
            self.chunked = Dechunker(head, self.max_body)
            self.buf = buf[body_start:]
            return self._next_chunks()
        match = _LENGTH.search(head) if b"content-length" in lowered else None
        length = int(match.group(1)) if match else 0
        body_end = body_start + min(length, self.max_body)
        if len(buf) < body_end:
            return None
        self.buf = buf[body_end:]
        if length > self.max_body:
            self.dead = True  # the rest of an oversized body is not parsed as requests
        return HttpRequest(head, buf[body_start:body_end], truncated=length > self.max_body)

    def _next_chunks(self) -> HttpRequest | None:
        body = self.chunked
        assert body is not None
        self.buf = self.buf[body.feed(self.buf):]
        if not body.done:
            return None
        self.chunked = None
        if body.bad or body.over:
            self.dead = True  # framing we cannot follow: inspect what we have, then stop
        return HttpRequest(body.head, body.body, truncated=body.bad or body.over)
