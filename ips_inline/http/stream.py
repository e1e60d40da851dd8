"""A connection's request stream cut into requests, as the server cuts it.

HttpStream is a state machine fed the initiator's reassembled bytes; it hands
out inspection units: the parts of a request head as soon as the head ends
(a head that declares a body which never comes is still inspected), the
parts of its body as they arrive, and the request's end. Everything a server
would act on is inspected; where the stream cannot be followed it raises
HttpError and the engine fails closed for the connection
(`engine.stream_error_policy`). Cost is linear in the bytes fed: buffers only
grow by what arrives, and the blank line is searched from where the last
search stopped.

What is HTTP: a request line `token SP target SP HTTP/d.d` (any method token,
as servers accept extension methods), or `GET SP /target` with no version
(HTTP/0.9, which nginx still serves). Empty lines before a request are
skipped (RFC 9112 2.2); a PROXY protocol header (v1 or v2) at the start of a
connection is skipped. A connection whose first bytes are not a request line
is not HTTP (TLS, SSH, SMTP...) and is no longer inspected; bytes that are not
a request where the next request must start are a desync: HttpError.

Framing, as RFC 9112 and the servers we protect: Transfer-Encoding ending in
`chunked` is chunked (leading zeros in chunk sizes accepted); another final
coding, Content-Length beside Transfer-Encoding, disagreeing or invalid
Content-Length values, chunk framing that does not parse: HttpError (the
request smuggling shapes; a server rejects or misreads them). After CONNECT or
an Upgrade request, what follows is a tunnel: inspected again only if it looks
like a request. The HTTP/2 connection preface (`PRI * HTTP/2.0`) cannot be
inspected: HttpError unless `engine.http2_cleartext = "accept"`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from ..packet.flows import StreamMemory
from .bodies import BodyParser, body_parser
from .request import HttpRequest, Part, strip_version, windows

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_METHOD_MAX = 32  # a longer first token is no HTTP method
_LINE_MAX = 4096  # a chunk-size or trailer line longer than this is not HTTP
_CHUNK_DIGITS = 15  # hex digits of a chunk size, leading zeros aside (2**60 bytes)
_LENGTH_DIGITS = 15
_PROXY_V1_MAX = 107  # the PROXY protocol's longest v1 line
_PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_WS = b" \t\r\x0b\x0c"
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # never in a request line

# Inspection units: (kind, request, parts)
HEAD, BODY, END = "head", "body", "end"
Unit = tuple[str, HttpRequest, list[Part]]
# Stream states
START, HEAD_FIELDS, BODY_LENGTH, BODY_CHUNKED, TUNNEL, NOT_HTTP = range(6)


class HttpError(Exception):
    """The stream cannot be followed; `reason` names why (metrics, EVE)."""

    reason: ClassVar[str] = "http"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # type: ignore[misc]


BodyFactory = Callable[[str], BodyParser]


class Dechunker:
    """Incremental de-chunking (Transfer-Encoding: chunked): raw bytes in,
    decoded body bytes out. Raises HttpError on framing it cannot follow."""

    __slots__ = ("left", "trailers", "done", "line", "trailer_lines")

    def __init__(self) -> None:
        self.left = 0  # chunk data still to come; -1: the line ending it
        self.trailers = False  # past the last chunk: trailer lines up to an empty one
        self.done = False
        self.line = bytearray()  # a size or trailer line not complete yet
        self.trailer_lines: list[str] = []

    def feed(self, buf: bytes) -> tuple[bytes, int]:
        """(decoded data, bytes of buf used); stops at the body's end."""
        out = []
        pos = 0
        while not self.done and pos < len(buf):
            if self.left > 0:
                piece = buf[pos:pos + self.left]
                out.append(piece)
                self.left -= len(piece)
                pos += len(piece)
                self.left = self.left or -1
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                self._grow(buf[pos:])
                pos = len(buf)
                break
            self._grow(buf[pos:nl])
            pos = nl + 1
            line = bytes(self.line).rstrip(b"\r")
            self.line.clear()
            self._line(line)
        return b"".join(out), pos

    def _grow(self, piece: bytes) -> None:
        self.line += piece
        if len(self.line) > _LINE_MAX:
            raise HttpError("chunk_line")

    def _line(self, line: bytes) -> None:
        if self.left == -1:  # the line ending a chunk's data must be empty
            if line:
                raise HttpError("chunk_framing")
            self.left = 0
        elif self.trailers:
            if line:
                self.trailer_lines.append(line.decode("latin-1"))
            else:
                self.done = True
        else:
            self.left = _chunk_size(line)
            self.trailers = self.left == 0


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(_WS)
    digits = size.lstrip(b"0")
    if not size or len(digits) > _CHUNK_DIGITS or any(c not in b"0123456789abcdefABCDEF"
                                                         for c in size):
        raise HttpError("chunk_size")
    return int(digits or b"0", 16)


def content_length(values: list[str]) -> int:
    """The body length the Content-Length fields declare; HttpError if they
    are invalid or disagree (servers reject those: request smuggling)."""
    lengths = set()
    for value in values:
        for item in value.split(","):
            digits = item.strip(" \t")
            if not digits or not digits.isdigit() or not digits.isascii():
                raise HttpError("bad_length")
            digits = digits.lstrip("0") or "0"
            if len(digits) > _LENGTH_DIGITS:
                raise HttpError("bad_length")
            lengths.add(int(digits))
    if len(lengths) > 1:
        raise HttpError("conflicting_length")
    return lengths.pop() if lengths else 0


def _is_chunked(values: list[str]) -> bool:
    codings = [c.strip(" \t").lower() for v in values for c in v.split(",")]
    codings = [c for c in codings if c]
    if not codings:
        raise HttpError("bad_transfer_encoding")
    if codings[-1] != "chunked":
        raise HttpError("bad_transfer_encoding")  # the server cannot find the body's end
    return True


class HttpStream:
    """One connection's request stream. `feed(data)` -> inspection units.

    The bytes not consumed yet sit in `buf`: a request line or head being
    completed, or the part of a segment past a head that the next state
    takes. Each step consumes a prefix of it or waits for more."""

    __slots__ = ("max_head", "max_body", "max_inspect", "state", "buf", "scan", "request",
                 "left", "chunks", "body", "body_factory", "requests", "mem", "held",
                 "picked", "http_port", "h2_ok", "http09", "error", "_units")

    def __init__(self, max_head: int, max_body: int, mem: StreamMemory | None = None,
                 body_factory: BodyFactory = body_parser, max_inspect: int = 4 << 20,
                 picked: bool = False, h2_ok: bool = False, http_port: bool = False) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.max_inspect = max_inspect
        self.state = START
        self.buf = bytearray()
        self.scan = 0  # how far the head's blank line was searched for
        self.request: HttpRequest | None = None
        self.left = 0  # Content-Length body bytes still to come
        self.chunks: Dechunker | None = None
        self.body: BodyParser | None = None
        self.body_factory = body_factory
        self.requests = 0  # complete requests cut so far
        self.mem = mem if mem is not None else StreamMemory()
        self.held = 0  # bytes charged to mem
        self.picked = picked  # picked up mid-stream: no PROXY header expected
        self.http_port = http_port  # to one of $HTTP_PORTS (rules.http_ports)
        self.h2_ok = h2_ok
        self.http09 = False
        self.error: HttpError | None = None  # why the stream cannot be followed
        self._units: list[Unit] = []

    # -- the engine's questions -------------------------------------------------------
    @property
    def dead(self) -> bool:
        """Not HTTP (or an uninspectable tunnel): nothing more to inspect."""
        return self.state == NOT_HTTP

    def mid_request(self) -> bool:
        return self.state in (HEAD_FIELDS, BODY_LENGTH, BODY_CHUNKED) or bool(self.buf)

    def idle(self) -> bool:
        """Between requests with nothing held: no request can be half inspected."""
        return self.state == START and not self.buf and self.requests > 0

    def release(self) -> None:
        self.mem.used -= self.held
        self.held = 0
        self.buf = bytearray()
        self.body = None
        self.request = None

    # -- feeding -------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Unit]:
        """Units complete with these bytes. Where the stream cannot be
        followed, `error` is set (an HttpError): the units cut before it are
        still returned, to be inspected, and nothing after it is."""
        units: list[Unit] = []
        self._units = units
        if self.state == NOT_HTTP or self.error is not None:
            return units
        self.buf += data
        step = self._step
        try:
            while self.buf and self.state != NOT_HTTP and step():
                pass
        except HttpError as exc:
            self.error = exc
            self.buf = bytearray()
        self._charge()
        return units

    def _step(self) -> bool:
        """One step; False when it needs more bytes."""
        state = self.state
        if state in (START, TUNNEL):
            return self._start()
        if state == HEAD_FIELDS:
            return self._head()
        if state == BODY_LENGTH:
            return self._body_length()
        return self._body_chunked()

    def _charge(self) -> None:
        held = len(self.buf) + (self.body.held if self.body is not None else 0) \
            + (len(self.request.body) if self.request is not None else 0)
        self.mem.used += held - self.held
        self.held = held

    # -- between requests ----------------------------------------------------------------
    def _start(self) -> bool:
        buf = self.buf
        skip = 0
        while skip < len(buf) and buf[skip] in b"\r\n":
            skip += 1  # empty lines before a request: servers skip them
        if skip:
            del buf[:skip]
            self.scan = 0
            return bool(buf)
        verdict = self._classify()
        if verdict is None:  # not decided yet: wait for more
            if len(buf) > self.max_head:
                raise HttpError("head_too_long")
            return False
        if verdict == "skip":
            self.scan = 0
            return True
        if verdict == "request":
            self.state, self.scan = HEAD_FIELDS, 0
            return True
        if self.requests and self.state == START:
            raise HttpError("desync")  # a request must start here: the server sees garbage
        if self.picked and self.http_port and self.requests == 0:
            # Picked up (a restart, an expiry) in the middle of something on an HTTP
            # port: the rest of a request or body the engine never saw the start of.
            # (After a request, non-HTTP bytes are a tunnel: Upgrade, CONNECT.)
            raise HttpError("mid_request")
        self.state = NOT_HTTP  # not HTTP, or a tunnel that no longer carries requests
        self.buf = bytearray()
        return False

    def _classify(self) -> str | None:
        """"request", "skip" (a PROXY header consumed), None (undecided), or
        why the bytes are not a request."""
        buf = self.buf
        if self.requests == 0 and self.state == START and not self.picked:
            skipped = self._proxy_header()
            if skipped is not None:
                return skipped
        if _H2_PREFACE.startswith(bytes(buf[:len(_H2_PREFACE)])) and len(buf) >= 3:
            if len(buf) < len(_H2_PREFACE):
                return None
            if not self.h2_ok:
                raise HttpError("http2_cleartext")
            return "HTTP/2, uninspected"
        i = 0
        while i < len(buf) and buf[i] in _TCHAR:
            i += 1
        if i == len(buf):
            return None if i <= _METHOD_MAX else "no request line"
        if i == 0 or i > _METHOD_MAX or buf[i] != 0x20:
            return "no request line"
        nl = buf.find(b"\n", max(self.scan, i))
        end = len(buf) if nl < 0 else nl
        if _CONTROL.search(buf, max(self.scan, i), end):
            return "binary"  # control bytes: no request line
        if nl < 0:
            self.scan = len(buf)
            return None
        self.scan = 0
        line = bytes(buf[:nl]).rstrip(b"\r").decode("latin-1")
        method, _, rest = line.partition(" ")
        _target, version = _split_target(rest)
        if version or "HTTP/" in line.upper():
            # A version, or one that is odd (`HTTP/1.`, no target, text after it):
            # servers answer such lines, some serve them; header fields follow.
            self.http09 = False
            return "request"
        if method == "GET" and _target.startswith("/"):
            self.http09 = True
            return "request"
        return "no request line"

    def _proxy_header(self) -> str | None:
        """Skip a PROXY protocol header (load balancers put it before the
        request); None when there is none."""
        buf = self.buf
        if buf[:1] == b"P" and b"PROXY ".startswith(bytes(buf[:6])):
            if len(buf) < 6:
                return None  # undecided: could still be PROXY or a method
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > _PROXY_V1_MAX:
                    raise HttpError("proxy_header")
                return None
            del buf[:nl + 1]
            return "skip"
        if buf[:1] == b"\r" and _PROXY_V2.startswith(bytes(buf[:12])):
            if len(buf) < 16:
                return None
            total = 16 + int.from_bytes(buf[14:16], "big")
            if len(buf) < total:
                return None
            del buf[:total]
            return "skip"
        return None

    # -- the head --------------------------------------------------------------------------
    def _head(self) -> bool:
        buf = self.buf
        if self.http09:
            return self._http09()
        end = _blank_line(buf, max(self.scan - 3, 0), self.max_head + 4)
        if end is None:
            self.scan = len(buf)
            if len(buf) > self.max_head:
                raise HttpError("head_too_long")
            return False
        head_stop, body_start = end
        head = bytes(buf[:head_stop])
        del buf[:body_start]
        self.scan = 0
        self._begin_request(head)
        return True

    def _http09(self) -> bool:
        """A version-less `GET /path` line is a whole request (HTTP/0.9)."""
        nl = self.buf.find(b"\n")
        request = HttpRequest(bytes(self.buf[:nl]).rstrip(b"\r"))
        del self.buf[:nl + 1]
        self.http09 = False
        self._emit(HEAD, request, request.head_parts())
        self._end(request)
        return True

    def _begin_request(self, head: bytes) -> None:
        request = self.request = HttpRequest(head)
        self._emit(HEAD, request, request.head_parts())
        te = [v for k, v in request.headers if k == "transfer-encoding"]
        cl = [v for k, v in request.headers if k == "content-length"]
        if te:
            if cl:
                raise HttpError("length_and_chunked")
            _is_chunked(te)
            self.chunks = Dechunker()
            self.body = self.body_factory(_content_type(request))
            self.state = BODY_CHUNKED
            return
        self.left = content_length(cl)
        if self.left:
            self.body = self.body_factory(_content_type(request))
            self.state = BODY_LENGTH
        else:
            self._end(request)

    # -- bodies -------------------------------------------------------------------------
    def _body_length(self) -> bool:
        buf = self.buf
        piece = bytes(buf[:self.left])
        del buf[:len(piece)]
        self.left -= len(piece)
        self._body_bytes(piece)
        if not self.left:
            self._finish_body()
        return True

    def _body_chunked(self) -> bool:
        chunks = self.chunks
        assert chunks is not None
        decoded, used = chunks.feed(bytes(self.buf))
        del self.buf[:used]
        if decoded:
            self._body_bytes(decoded)
        if not chunks.done:
            return False
        request = self.request
        assert request is not None
        trailers = [p for line in chunks.trailer_lines for p in windows(line, False)]
        if trailers:
            self._emit(BODY, request, trailers)
        self.chunks = None
        self._finish_body()
        return True

    def _body_bytes(self, piece: bytes) -> None:
        request, body = self.request, self.body
        assert request is not None and body is not None
        request.length += len(piece)
        keep = self.max_body - len(request.body)
        if keep > 0:
            request.body += piece[:keep]
        if len(piece) > keep:
            request.body_cut = True
        parts = body.feed(piece)
        if parts:
            self._emit(BODY, request, parts)

    def _finish_body(self) -> None:
        request, body = self.request, self.body
        assert request is not None and body is not None
        parts = body.finish(False)
        request.body_kind, request.body_skipped = body.kind, body.skipped
        if parts:
            self._emit(BODY, request, parts)
        self._end(request)

    def _end(self, request: HttpRequest) -> None:
        self._units.append((END, request, []))
        self.requests += 1
        self.request = self.body = None
        self.state = TUNNEL if _tunnels(request) else START

    def _emit(self, kind: str, request: HttpRequest, parts: list[Part]) -> None:
        request.inspected += sum(len(text) for text, _plus in parts)
        if request.inspected > self.max_inspect:
            raise HttpError("inspect_budget")
        self._units.append((kind, request, parts))


def _split_target(rest: str) -> tuple[str, str]:
    return strip_version(rest.strip(" \t"))


def _content_type(request: HttpRequest) -> str:
    """The body's type; with several Content-Type fields servers disagree on
    which wins: read it as text (parameters and windows, never skipped)."""
    types = [v for k, v in request.headers if k == "content-type"]
    return types[0] if len(types) == 1 else "text/plain" if types else ""


def _tunnels(request: HttpRequest) -> bool:
    """After CONNECT, or a request asking to switch protocols, the bytes that
    follow may be another protocol (when the server agreed)."""
    return request.method == "CONNECT" or bool(request.header("upgrade"))


def _blank_line(buf: bytearray | bytes, start: int, limit: int) -> tuple[int, int] | None:
    """Where the head's ending blank line (LF LF or LF CR LF, a CR before the
    first LF included) starts and ends within buf[start:limit], or None."""
    lf_lf, lf_crlf = buf.find(b"\n\n", start, limit), buf.find(b"\n\r\n", start, limit)
    if lf_lf < 0 and lf_crlf < 0:
        return None
    if lf_crlf < 0 or 0 <= lf_lf < lf_crlf:
        first, end = lf_lf, lf_lf + 2
    else:
        first, end = lf_crlf, lf_crlf + 3
    return (first - 1 if first and buf[first - 1] == 13 else first), end
