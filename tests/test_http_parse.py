"""The HTTP head parser's hand-written scans agree with the plain regular
expressions that define them (the scans exist for speed, not new meaning)."""

from __future__ import annotations

import html
import re
from html.entities import html5

from hypothesis import given, settings
from hypothesis import strategies as st

from ips_inline.http.normalize import unescape
from ips_inline.http.request import HttpRequest, strip_version
from ips_inline.http.stream import END, HttpStream, _blank_line

HEAD_END = re.compile(rb"\r?\n\r?\n")  # a blank line ends the head
VERSION = re.compile(rb"\s+HTTP/\d(\.\d)?$")

_PIECES = [b"\r", b"\n", b"\r\n", b" ", b"\t", b"a", b"HTTP/", b"1", b".", b"1.1", b"\x85", b"\xa0"]
pieces = st.lists(st.sampled_from(_PIECES), max_size=14).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(pieces, st.integers(0, 40))
def test_blank_line_is_the_blank_line_regex(buf: bytes, limit: int) -> None:
    match = HEAD_END.search(buf, 0, limit)
    assert _blank_line(buf, 0, limit) == ((match.start(), match.end()) if match else None)


@settings(max_examples=2000, deadline=None)
@given(pieces)
def test_strip_version_is_the_version_regex(target: bytes) -> None:
    target = target.strip()  # cut from a stripped request line, as in HttpRequest
    match = VERSION.search(target)
    expected = target[:match.start()] if match else target
    if re.fullmatch(rb"HTTP/\d\.\d", target):
        expected = b""  # `OPTIONS HTTP/1.1`: a version, no target
    assert strip_version(target.decode("latin-1"))[0] == expected.decode("latin-1")


def test_only_the_space_is_printable_white_space() -> None:
    # normalize.fold() skips its white-space regex on printable text on this basis.
    assert [c for c in map(chr, range(0x110000))
            if c != " " and c.isprintable() and re.match(r"\s", c)] == []


def test_request_parts() -> None:
    req = HttpRequest(b"GET /a b?q=1 HTTP/1.1\r\nHost: x\r\nX-Note:  hi there \r\n"
                      b"Cookie: s=1; t=%27")
    assert (req.method, req.target, req.version) == ("GET", "/a b?q=1", "HTTP/1.1")
    assert req.headers == [("host", "x"), ("x-note", "hi there"), ("cookie", "s=1; t=%27")]
    req.select(req.head_parts())
    assert "'" in req.values and "hi there" in req.values


def test_stream_cuts_bodies_by_length_and_chunks() -> None:
    stream = HttpStream(8192, 65536)
    units = stream.feed(b"POST /a HTTP/1.1\nContent-Length: 3\n\nabcGET /b HTTP/1.0\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n")
    assert [(r.target, bytes(r.body)) for kind, r, _p in units if kind == END] == [
        ("/a", b"abc"), ("/b", b"xy")]


_ENTITYISH = ["&", "#", ";", "x", "3", "9", "a", "m", "p", "l", "t", "g", "A", "E", "n", "o",
              " ", "\t", "<", "=", "amp", "lt;", "not", "#x3c", "#60", "page", "AElig", "zwj"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_ENTITYISH), max_size=12).map("".join))
def test_unescape_equals_html_unescape(text: str) -> None:
    assert unescape(text) == html.unescape(text)


def test_no_reference_name_is_shorter_than_two() -> None:
    assert min(map(len, html5)) == 2  # unescape() looks at two characters after "&"
