"""Suricata 7's HTTP request buffers, computed from one request, each at most
once and only when a rule asks for it.

Definitions (Suricata's user guide, libhtp with its default IDS personality):
- http.uri: the path and query of the target (an absolute-form target loses
  its scheme and authority), percent-decoded once (%XX; `+` stays, %uXXXX
  stays: the Linux servers behind us do not decode it), dot segments of the
  path removed (RFC 3986 5.2.4, as libhtp does). http.uri.raw: the target as sent.
- http.header: "Name: value\\r\\n" per header except Cookie, duplicates merged
  into the first one's line as "v1, v2" (libhtp's header table), trailing
  white space already stripped by the request parser. http.header.raw: the
  header lines in order, Cookie included, duplicates kept (rebuilt from the
  parsed headers: the original spacing is not available).
- http.header_names: "\\r\\n" + each name once (as first sent) + "\\r\\n\\r\\n".
- http.user_agent, http.cookie, http.referer, ...: the header's values joined
  with ", "; absent (no buffer at all) when the header is missing.
- http.host: from the absolute-form target's authority, else the Host
  header(s); lowercased, port removed. http.host.raw: as sent.
- http.request_line, http.protocol, http.method: as sent.
- http.start: request line, header lines, blank line.
- "stream": what a plain `content` in an http rule inspects here: the request
  head rebuilt like http.start but with http.header.raw's lines (Suricata
  inspects the raw TCP stream; we inspect one request at a time).
- http.request_body: the de-chunked body; absent when empty.

A missing buffer matches nothing, a negated content included (Suricata).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .views import RequestView

_ABSOLUTE = re.compile(rb"^[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")

# sticky buffer -> header whose values it holds
HEADER_BUFFERS = {
    "http.user_agent": "user-agent",
    "http.cookie": "cookie",
    "http.referer": "referer",
    "http.accept": "accept",
    "http.accept_enc": "accept-encoding",
    "http.accept_lang": "accept-language",
    "http.connection": "connection",
    "http.content_type": "content-type",
    "http.content_len": "content-length",
}
HEAD_BUFFERS = frozenset({
    "http.uri", "http.uri.raw", "http.method", "http.header", "http.header.raw",
    "http.header_names", "http.host", "http.host.raw", "http.request_line",
    "http.protocol", "http.start", "stream", *HEADER_BUFFERS,
})
BODY_BUFFERS = frozenset({"http.request_body"})
HTTP_BUFFERS = HEAD_BUFFERS | BODY_BUFFERS


def to_bytes(text: str) -> bytes:
    """The request's strings are latin-1 decoded bytes; anything wider is
    kept as UTF-8 rather than lost."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _encode_fields(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Names and values as bytes: one encode for all (the request parser splits
    lines on LF, so none holds one), else one each."""
    if not fields:
        return []
    try:
        items = "\n".join([text for field in fields for text in field]).encode("latin-1")
    except UnicodeEncodeError:
        items = b""  # a view from elsewhere, wider than latin-1: to_bytes() each
    parts = items.split(b"\n")
    if len(parts) != 2 * len(fields):  # (or with LF inside a value)
        return [(to_bytes(n), to_bytes(v)) for n, v in fields]
    return list(zip(parts[::2], parts[1::2], strict=True))


def percent_decode(raw: bytes) -> bytes:
    """One round of %XX decoding; malformed escapes stay as they are."""
    if b"%" not in raw:
        return raw
    return _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), raw)


def remove_dot_segments(path: bytes) -> bytes:
    if b"." not in path:
        return path
    out: list[bytes] = []
    segments = path.split(b"/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == b".":
            if last:
                out.append(b"")
        elif seg == b"..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(seg)
    result = b"/".join(out)
    if path.startswith(b"/") and not result.startswith(b"/"):
        result = b"/" + result
    return result


def split_target(raw: bytes) -> tuple[bytes, bytes | None]:
    """(path-and-query, authority of an absolute-form target or None)."""
    m = _ABSOLUTE.match(raw)
    if not m:
        return raw, None
    rest = raw[m.end():]
    return (rest if rest.startswith(b"/") else b"/" + rest), m.group(1)


def normalize_uri(raw: bytes) -> bytes:
    path_query, _ = split_target(raw)
    if path_query == b"*":
        return path_query
    path, sep, query = path_query.partition(b"?")
    path = remove_dot_segments(percent_decode(path))
    return path + b"?" + percent_decode(query) if sep else path


def host_only(value: bytes) -> bytes:
    """Lowercased host without userinfo or port ("[v6]" kept whole)."""
    value = value.rpartition(b"@")[2].strip()
    if value.startswith(b"["):
        end = value.find(b"]")
        value = value[:end + 1] if end > 0 else value
    elif value.count(b":") == 1:
        value = value.partition(b":")[0]
    return value.lower()


_MISSING = object()


class HttpBuffers:
    """The buffers of one request; `get(name)` is None for an absent buffer."""

    __slots__ = ("_req", "_cache", "_headers", "_lnames", "_by_name", "_lower")

    def __init__(self, req: RequestView) -> None:
        self._req = req
        self._cache: dict[str, bytes | None] = {}
        self._lower: dict[str, bytes | None] = {}
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._lnames: list[bytes] = []  # the names lowercased, in order
        self._by_name: dict[bytes, list[bytes]] = {}

    def get(self, name: str) -> bytes | None:
        value = self._cache.get(name, _MISSING)  # most calls build: no KeyError raised
        if value is _MISSING:
            value = self._cache[name] = _BUILDERS[name](self)
        return value  # type: ignore[return-value]

    def lower(self, name: str) -> bytes | None:
        """The buffer lowercased (ASCII only: the same length, so offsets hold)."""
        value = self._lower.get(name, _MISSING)
        if value is _MISSING:
            buf = self.get(name)
            value = self._lower[name] = None if buf is None else buf.lower()
        return value  # type: ignore[return-value]

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self._headers is None:
            self._headers = _encode_fields(self._req.headers)
            self._lnames = [name.lower() for name, _ in self._headers]
            by_name = self._by_name
            for lname, (_, value) in zip(self._lnames, self._headers, strict=True):
                values = by_name.get(lname)
                if values is None:
                    by_name[lname] = [value]
                else:
                    values.append(value)
        return self._headers

    def values(self, lname: bytes) -> list[bytes]:
        self.headers()
        return self._by_name.get(lname, [])

    def joined(self, lname: bytes) -> bytes | None:
        vals = self.values(lname)
        if not vals:
            return None
        return vals[0] if len(vals) == 1 else b", ".join(vals)

    def merged_lines(self, skip_cookie: bool) -> list[bytes]:
        headers = self.headers()
        lnames, by_name = self._lnames, self._by_name
        if len(by_name) == len(headers):  # no name twice: nothing to merge (the usual case)
            return [name + b": " + value + b"\r\n"
                    for (name, value), lname in zip(headers, lnames, strict=True)
                    if not (skip_cookie and lname == b"cookie")]
        out: list[bytes] = []
        done: set[bytes] = set()
        for (name, _), lname in zip(headers, lnames, strict=True):
            if lname in done or skip_cookie and lname == b"cookie":
                continue
            done.add(lname)  # the first one's line holds them all, as sent first
            out.append(name + b": " + b", ".join(by_name[lname]) + b"\r\n")
        return out

    def raw_lines(self) -> bytes:
        return b"".join(n + b": " + v + b"\r\n" for n, v in self.headers())

    @property
    def req(self) -> RequestView:
        return self._req


def _host(b: HttpBuffers, normalize: bool) -> bytes | None:
    _, authority = split_target(to_bytes(b.req.target))
    values = [authority] if authority else b.values(b"host")
    if not values:
        return None
    return b", ".join(host_only(v) for v in values) if normalize else b", ".join(values)


def _header_names(b: HttpBuffers) -> bytes | None:
    seen: dict[bytes, bytes] = {}
    for name, _ in b.headers():
        seen.setdefault(name.lower(), name)
    if not seen:
        return None
    return b"\r\n" + b"\r\n".join(seen.values()) + b"\r\n\r\n"


def _start(b: HttpBuffers) -> bytes:
    return to_bytes(b.req.request_line) + b"\r\n" + b"".join(b.merged_lines(False)) + b"\r\n"


def _stream(b: HttpBuffers) -> bytes:
    return to_bytes(b.req.request_line) + b"\r\n" + b.raw_lines() + b"\r\n"


def _header(b: HttpBuffers) -> bytes | None:
    return b"".join(b.merged_lines(True)) or None


def _header_value(lname: str) -> Callable[[HttpBuffers], bytes | None]:
    key = lname.encode()
    return lambda b: b.joined(key)


_BUILDERS: dict[str, Callable[[HttpBuffers], bytes | None]] = {
    "http.uri": lambda b: normalize_uri(to_bytes(b.req.target)) or None,
    "http.uri.raw": lambda b: to_bytes(b.req.target) or None,
    "http.method": lambda b: to_bytes(b.req.method) or None,
    "http.protocol": lambda b: to_bytes(b.req.version) or None,
    "http.request_line": lambda b: to_bytes(b.req.request_line) or None,
    "http.header": _header,
    "http.header.raw": lambda b: b.raw_lines() or None,
    "http.header_names": _header_names,
    "http.host": lambda b: _host(b, True),
    "http.host.raw": lambda b: _host(b, False),
    "http.start": _start,
    "stream": _stream,
    "http.request_body": lambda b: bytes(b.req.body) or None,
    **{name: _header_value(h) for name, h in HEADER_BUFFERS.items()},
}
