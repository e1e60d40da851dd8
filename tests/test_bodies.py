"""Request bodies by content type (http/bodies.py): each value alone, binary
file contents skipped but counted, fallbacks that inspect raw text instead of
skipping, bounded memory, work linear in the bytes, and the same Parts however
the body is split into segments."""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_inline.config import Config
from ips_inline.detectors.base import Context
from ips_inline.detectors.http_attacks import CmdInjection, PathTraversal, Sqli, Xss
from ips_inline.http.bodies import (
    BodyLimits,
    Part,
    body_parser,
    header_params,
    json_strings,
    looks_binary,
)
from ips_inline.http.normalize import decode_value, fold
from ips_inline.http.stream import HttpRequest
from ips_inline.packet.decode import PROTO_TCP, Packet
from ips_inline.packet.flows import Flow, FlowTable

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "zeek-traces"
LIMITS = BodyLimits()


# -- helpers -------------------------------------------------------------------------------------
def parse(ctype: str, body: bytes, split: int | list[int] | None = None,
          limits: BodyLimits = LIMITS, cut: bool = False) -> tuple[list[Part], object, int]:
    """Parts of a body fed in segments of `split` bytes (or at these offsets),
    the parser, and the most it held."""
    parser = body_parser(ctype, limits)
    if split is None:
        offsets = [0, len(body)]
    elif isinstance(split, int):
        offsets = [*range(0, len(body), split), len(body)]
    else:
        offsets = [0, *sorted(set(split)), len(body)]
    parts: list[Part] = []
    held = 0
    for start, stop in zip(offsets, offsets[1:], strict=False):
        parts += parser.feed(body[start:stop])
        held = max(held, parser.held)
    parts += parser.finish(cut)
    return parts, parser, held


def texts(parts: list[Part]) -> list[str]:
    return [text for text, _ in parts]


_CFG = Config()
_CTX = Context(_CFG.engine, FlowTable(64, 60, 10))
DETECTORS = [cls(_CFG.detectors[cls.name], _CTX)
             for cls in (Sqli, Xss, PathTraversal, CmdInjection)]


def flagged(parts: list[Part]) -> list[tuple[str, str]]:
    """(detector, value) for every Part today's payload detectors flag, each
    Part inspected alone, as the lead's stream parser will hand them."""
    request = HttpRequest(b"POST / HTTP/1.1\r\nHost: victim", b"", False)
    # Real objects, not stand-ins: compiled detectors check their arguments' types.
    pkt = Packet(b"\x0a\0\0\x01", b"\x0a\0\0\x02", PROTO_TCP, 40)
    flow = Flow(pkt.src, 40000, 0.0, 0, True)
    flow.request = request
    out = []
    for part in parts:
        request.select([part])
        out += [(d.name, part[0][:80]) for d in DETECTORS if d.inspect(pkt, flow, 0.0)]
    return out


def multipart(fields: list[tuple[str, bytes]], boundary: str = "XyZ123",
              epilogue: bytes = b"") -> bytes:
    """A multipart/form-data body; each field is (Content-Disposition and other
    header lines after "form-data; ", content)."""
    out = b""
    for head, content in fields:
        out += f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode() + epilogue


MP = "multipart/form-data; boundary=XyZ123"
SQLI = "1' UNION SELECT username, password FROM users--"
BINARY = bytes(range(256)) * 8  # NULs and every other byte: binary


def bound(limits: BodyLimits = LIMITS) -> int:
    """What any parser may hold, whatever the body's size."""
    return (limits.block + limits.max_buffer + 4 * limits.max_value + limits.sniff
            + limits.part_headers * limits.part_header_size + 2 * limits.overlap)


# -- urlencoded forms ----------------------------------------------------------------------------
def test_form_names_values_and_cross_parameter_windows() -> None:
    parts, parser, _ = parse("application/x-www-form-urlencoded", b"a=1&b=x+y&lone&=v&n=")
    assert parser.kind == "form" and parser.skipped == 0
    assert parts == [("a", True), ("1", True), ("b", True), ("x+y", True), ("lone", True),
                     ("v", True), ("n", True), ("a=1&b=x+y&lone&=v&n=", True)]


def test_an_odd_name_is_inspected_with_its_value() -> None:
    """`?1'+OR+'1'='1=asc`: neither the name nor the value alone is SQLi to
    libinjection; the pair, inspected whole since its name is no field name, is."""
    parts, _, _ = parse("application/x-www-form-urlencoded", b"1'+OR+'1'='1=asc")
    assert texts(parts) == ["1'+OR+'1'", "'1=asc", "1'+OR+'1'='1=asc"]
    assert flagged(parts) == [("sqli", "1'+OR+'1'='1=asc")]


@pytest.mark.parametrize("body", [
    b"pad=" + b"a" * 16384 + b"&q=1%27+OR+%271%27%3D%271",  # attack in the next parameter
    b"q=" + b"a" * 16384 + b"%27+OR+1%3D1--+-",  # attack at the end of a 16 KB value
    b"a=" + b"x" * 20000 + b"&" + b"b=" + b"y" * 20000 + b"&q=1' UNION SELECT pass FROM users--",
])
def test_attack_after_16k_of_padding_is_found(body: bytes) -> None:
    parts, _, held = parse("application/x-www-form-urlencoded", body, split=1460)
    assert [d for d, _ in flagged(parts)] and held <= bound()
    assert max(len(t) for t in texts(parts)) <= LIMITS.max_value


def test_windows_overlap_and_cover_every_character() -> None:
    limits = BodyLimits(max_value=1000, overlap=600)
    value = "".join(chr(65 + i % 26) for i in range(5003))
    parts, _, _ = parse("application/x-www-form-urlencoded", ("q=" + value).encode(), split=7,
                        limits=limits)
    windows = texts(parts)[1:]
    assert all(len(w) <= 1000 for w in windows)
    assert windows[0] == value[:1000] and windows[-1].endswith(value[-100:])
    for before, after in zip(windows, windows[1:], strict=False):
        assert before[-600:] == after[:600]  # each window starts max_value - overlap later
    assert "".join([windows[0], *[w[600:] for w in windows[1:]]]) == value


def test_project_attacks_and_look_alikes_in_form_bodies() -> None:
    """test_evasion's attacks in every encoding, and its benign look-alikes,
    sent as form bodies: each attack flagged by its detector, no look-alike."""
    from urllib.parse import quote

    from test_evasion import ATTACKS, BENIGN_VALUES, ENCODINGS

    missed = []
    for detector, attacks in ATTACKS.items():
        for attack in attacks:
            for name, encode in ENCODINGS.items():
                body = ("a=1&q=" + encode(attack)).encode()
                parts = parse("application/x-www-form-urlencoded", body, split=9)[0]
                if detector not in [d for d, _ in flagged(parts)]:
                    missed.append((detector, attack, name))
    assert not missed
    noisy = []
    for value in BENIGN_VALUES:
        body = ("a=1&q=" + quote(value, safe="")).encode()
        if hits := flagged(parse("application/x-www-form-urlencoded", body)[0]):
            noisy.append(hits)
    assert not noisy


@pytest.mark.parametrize("where", ["multipart", "json", "xml"])
def test_project_attacks_in_fields_strings_and_text(where: str) -> None:
    from xml.sax.saxutils import escape

    from test_evasion import ATTACKS, BENIGN_VALUES

    def body(value: str) -> tuple[str, bytes]:
        if where == "multipart":
            return MP, multipart([('name="a"', b"1"), ('name="q"', value.encode())])
        if where == "json":
            return "application/json", json.dumps({"a": 1, "q": value}).encode()
        return "text/xml", f"<r><a>1</a><q>{escape(value)}</q></r>".encode()

    missed = [(d, a) for d, attacks in ATTACKS.items() for a in attacks
              if d not in [hit for hit, _ in flagged(parse(*body(a), split=7)[0])]]
    assert not missed
    noisy = [v for v in BENIGN_VALUES if flagged(parse(*body(v))[0])]
    assert not noisy


def test_text_and_unknown_types_read_as_today() -> None:
    parts, parser, _ = parse("text/plain", b"id=1' or '1'='1")
    assert parser.kind == "text" and flagged(parts)
    parts, parser, _ = parse("", b"id=1' or '1'='1")
    assert parser.kind == "text" and flagged(parts)


# -- multipart -----------------------------------------------------------------------------------
def test_multipart_fields_and_file_names_each_alone() -> None:
    body = multipart([('name="user"', b"O'Brien"), ('name="note"', b"union station"),
                      ('name="f"; filename="cv.txt"\r\nContent-Type: text/plain', b"hello")])
    parts, parser, _ = parse(MP, body)
    assert parser.kind == "multipart" and parser.fallback == "" and parser.skipped == 0
    assert texts(parts) == ["user", "O'Brien", "note", "union station", "f", "cv.txt", "hello"]
    assert not flagged(parts)


@pytest.mark.parametrize(("head", "content", "detector"), [
    ('name="q"', SQLI.encode(), "sqli"),
    ('name="f"; filename="<script>alert(1)</script>.png"', BINARY, "xss"),
    ('name="f"; filename="../../etc/passwd"', BINARY, "path_traversal"),
    ("name=\"1' OR '1'='1\"", b"x", "sqli"),
    ('name="f"; filename="a.txt"\r\nContent-Type: text/plain', SQLI.encode(), "sqli"),
    ('name="f"; filename="a.png"\r\nContent-Type: image/png', SQLI.encode(), "sqli"),  # text
    ('name="f"; filename="a.png"\r\nContent-Type: image/png\' OR \'1\'=\'1', BINARY, "sqli"),
    ('name="f"; filename="a"\r\nX-Note: <script>alert(1)</script>', BINARY, "xss"),
    # `filename*` alone is a field to PHP: its content is never skipped, NUL or not
    ("name=\"q\"; filename*=UTF-8''x.bin", b"\0" + SQLI.encode(), "sqli"),
    ("name=\"q\"; filename*=UTF-8''%27%20OR%20%271%27%3D%271", b"x", "sqli"),
    # quoting games some server may read as a field: not a file either
    ('name="q\\"; filename=\\"x"', b"\0" + SQLI.encode(), "sqli"),
])
def test_multipart_attacks_are_found(head: str, content: bytes, detector: str) -> None:
    parts, _, _ = parse(MP, multipart([(head, content)]), split=5)
    assert detector in [d for d, _ in flagged(parts)], texts(parts)


def test_binary_upload_of_1mb_passes_skipped_and_counted() -> None:
    data = (BINARY * 600)[:1 << 20]
    body = multipart([('name="doc"', b"report"),
                      ('name="f"; filename="x.bin"\r\nContent-Type: application/octet-stream',
                       data)])
    parts, parser, held = parse(MP, body, split=1460)
    assert texts(parts) == ["doc", "report", "f", "x.bin"] and not flagged(parts)
    assert parser.skipped == len(data) and held <= LIMITS.block + LIMITS.sniff + 4096


def test_upload_memory_does_not_grow_with_its_size() -> None:
    def held_for(size: int) -> int:
        parser = body_parser(MP, LIMITS)
        head = (b"--XyZ123\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n"
                b"\r\n")
        most = 0
        parser.feed(head)
        chunk = BINARY[:1460]
        for _ in range(size // len(chunk)):
            parser.feed(chunk)
            most = max(most, parser.held)
        parser.feed(b"\r\n--XyZ123--\r\n")
        parser.finish(False)
        assert parser.skipped >= size - len(chunk)
        return most

    assert held_for(1 << 20) == held_for(100 << 20) <= LIMITS.block + LIMITS.sniff + 4096


@pytest.mark.parametrize(("ctype", "body", "reason"), [
    (MP, multipart([('name="q"', SQLI.encode())]).replace(b"\r\n", b"\n"), "framing"),
    ("multipart/form-data", multipart([('name="q"', SQLI.encode())]), "boundary"),
    ("multipart/form-data; boundary=a; boundary=XyZ123", multipart([('name="q"', SQLI.encode())]),
     "boundary"),
    (MP, b"\r\n\r\n" + SQLI.encode() + b"\r\n", "framing"),  # never a part: not skipped
    (MP, b"garbage first\r\n" + multipart([('name="q"', SQLI.encode())]), "framing"),
    (MP, multipart([("name=\"q\"\r\n" + "X-A: b\r\n" * 20, SQLI.encode())]), "framing"),
    (MP, multipart([("name=\"q\"\r\nX-Long: " + "b" * 5000, SQLI.encode())]), "framing"),
    (MP, b"\r\n" * 600 + SQLI.encode(), "preamble"),
])
def test_multipart_the_parser_cannot_follow_is_read_as_raw_text(ctype: str, body: bytes,
                                                                  reason: str) -> None:
    limits = BodyLimits(max_buffer=1024)  # for the preamble
    parts, parser, held = parse(ctype, body, split=1000, limits=limits)
    assert parser.fallback == reason and parser.skipped == 0
    assert "sqli" in [d for d, _ in flagged(parts)] and held <= bound(limits)


def test_multipart_epilogue_is_inspected_unless_binary() -> None:
    parts, _, _ = parse(MP, multipart([('name="a"', b"1")], epilogue=SQLI.encode()), split=3)
    assert "sqli" in [d for d, _ in flagged(parts)]
    parts, parser, _ = parse(MP, multipart([('name="a"', b"1")], epilogue=BINARY))
    assert texts(parts) == ["a", "1"] and parser.skipped == 2 + len(BINARY)  # CRLF, then it


def test_multipart_body_cut_inside_a_part_keeps_what_it_read() -> None:
    body = multipart([('name="q"', SQLI.encode())])
    parts, _, _ = parse(MP, body[:body.index(b"--\r\n", 20)], split=11, cut=True)
    assert "sqli" in [d for d, _ in flagged(parts)]


def test_multipart_json_part_is_read_as_json() -> None:
    body = multipart([('name="meta"\r\nContent-Type: application/json',
                       b'{"who": "O\'Brien", "q": "1\\u0027 OR \\u00271\\u0027=\\u00271"}')])
    parts, _, _ = parse(MP, body)
    assert "1' OR '1'='1" in texts(parts) and "O'Brien" in texts(parts)


def test_header_params() -> None:
    assert header_params('Form-Data; Name="a;b"; filename=x.png; e="q\\"t"; f') == (
        "form-data", [("name", "a;b"), ("filename", "x.png"), ("e", 'q"t'), ("f", "")])
    assert header_params("") == ("", [])
    assert header_params('a; b="unterminated') == ("a", [("b", "unterminated")])


# -- JSON ----------------------------------------------------------------------------------------
def test_json_strings_alone_with_escapes_decoded() -> None:
    doc = (b'{"user": "O\\u0027Brien", "q": "1\\u0027 OR \\u00271\\u0027=\\u00271", "n": 3,'
           b' "tags": ["union station", "\\ud83d\\ude00", "\\ud800x"], "k\\u0027": null}')
    parts, parser, _ = parse("application/json", doc)
    assert parser.kind == "json" and parser.fallback == ""
    assert texts(parts) == ["user", "O'Brien", "q", "1' OR '1'='1", "n", "tags",
                            "union station", "\U0001f600", "\ufffdx", "k'"]
    assert [d for d, _ in flagged(parts)] == ["sqli"]


def test_json_duplicate_keys_are_all_inspected() -> None:
    parts, _, _ = parse("application/json", b'{"q": "' + SQLI.encode() + b'", "q": "fine"}')
    assert "sqli" in [d for d, _ in flagged(parts)]


@pytest.mark.parametrize("ctype", ["application/json", "application/vnd.api+json", "text/json",
                                   "application/json; charset=utf-8"])
def test_json_types(ctype: str) -> None:
    assert parse(ctype, b'["a"]')[1].kind == "json"


def test_big_json_is_scanned_to_the_same_strings() -> None:
    rng = random.Random(7)
    doc = json.dumps({f"k{i}": [f"v{i} \u00e9 \U0001f600 '\"\\", i, None,
                                {"n": "x" * rng.randint(0, 300)}] for i in range(100)}).encode()
    whole, parser, _ = parse("application/json", doc)
    assert parser.fallback == "" and len(doc) < LIMITS.max_buffer
    small = BodyLimits(max_buffer=1024)
    scanned, parser, held = parse("application/json", doc, split=333, limits=small)
    assert parser.fallback == "streamed" and scanned == whole and held <= bound(small)


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_docs, st.booleans(), st.integers(1, 97))
def test_the_scanner_reads_what_json_reads(doc, ascii_only: bool, split: int) -> None:
    """On valid JSON (astral characters escaped as surrogate pairs or not)
    the scanner gives exactly json's Parts."""
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode()
    whole, parser, _ = parse("application/json", raw)
    assert parser.fallback == ""
    scanned, parser, _ = parse("application/json", raw, split=split,
                               limits=BodyLimits(max_buffer=1, max_value=64, overlap=8))
    expected = [p for text in json_strings(raw) or [] for p in _windows(text, 64, 8)]
    assert parser.fallback in ("streamed", "") and scanned == expected
    assert texts(whole) == json_strings(raw)


def _windows(text: str, size: int, overlap: int) -> list[Part]:
    if len(text) <= size:
        return [(text, False)] if text else []
    out, start = [], 0
    while len(text) - start > size:
        out.append((text[start:start + size], False))
        start += size - overlap
    return [*out, (text[start:], False)]


def test_json_attack_past_the_buffer_is_found() -> None:
    doc = b'{"pad": "' + b"a" * 100000 + b'", "q": "1\\u0027 OR 1=1-- -"}'
    parts, parser, held = parse("application/json", doc, split=1460)
    assert parser.fallback == "streamed" and held <= bound()
    assert "sqli" in [d for d, _ in flagged(parts)]


@pytest.mark.parametrize("doc", [
    b"{'q': \"1' OR '1'='1\"}",  # relaxed JSON (single quotes), as Jackson or JSON5 read it
    b"{'q': '1\\' OR \\'1\\'=\\'1'}",
    b'{"a": 1, /* c */ "q": "1\' OR \'1\'=\'1"}',
    b'{"q": "1\' OR \'1\'=\'1"',  # cut short
])
def test_json_that_json_refuses_is_still_inspected(doc: bytes) -> None:
    parts, _, _ = parse("application/json", doc, split=4)
    assert "sqli" in [d for d, _ in flagged(parts)]


def test_json_in_utf16_is_decoded() -> None:
    doc = json.dumps({"q": SQLI}).encode("utf-16-le")
    assert "sqli" in [d for d, _ in flagged(parse("application/json", doc)[0])]
    big = json.dumps({"pad": "a" * 70000, "q": SQLI}).encode("utf-16-be")
    parts, parser, _ = parse("application/json", big, split=999)
    assert parser.fallback == "streamed" and "sqli" in [d for d, _ in flagged(parts)]


def test_deeply_nested_json_does_not_raise() -> None:
    for doc in (b"[" * 60000, b"[" * 5000 + b'"' + SQLI.encode() + b'"' + b"]" * 5000):
        parts, _, held = parse("application/json", doc, split=4096)
        assert held <= bound()
    assert "sqli" in [d for d, _ in flagged(parts)]
    assert json_strings(b"[" * 5000 + b"]" * 5000) is None  # past the interpreter's limit


# -- XML -----------------------------------------------------------------------------------------
SOAP = b"""<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" \
s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
<s:Body>
<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">
<NewRemoteHost></NewRemoteHost>
<NewExternalPort>51413</NewExternalPort>
<NewProtocol>TCP</NewProtocol>
<NewInternalPort>51413</NewInternalPort>
<NewInternalClient>192.168.1.2</NewInternalClient>
<NewEnabled>1</NewEnabled>
<NewPortMappingDescription>Transmission at 51413</NewPortMappingDescription>
<NewLeaseDuration>0</NewLeaseDuration>
</u:AddPortMapping>
</s:Body>
</s:Envelope>
"""


def test_soap_post_passes() -> None:
    assert flagged([(SOAP.decode(), False)])  # the body as one value: today's false positive
    parts, parser, _ = parse('text/xml; charset="utf-8"', SOAP, split=17)
    assert parser.kind == "xml" and parser.fallback == "" and not flagged(parts)
    assert "Transmission at 51413" in texts(parts)
    assert "http://schemas.xmlsoap.org/soap/envelope/" in texts(parts)


def test_xml_text_and_attributes_alone_entities_decoded() -> None:
    doc = (b"<a t=\"O&apos;Brien\"><b>1&#39; OR &#x27;1&#39;=&#39;1</b>"
           b"<c><![CDATA[<script>alert(1)</script>]]></c>mixed <d/> tail</a>")
    parts, _, _ = parse("application/xml", doc, split=3)
    assert texts(parts) == ["O'Brien", "1' OR '1'='1", "<script>alert(1)</script>", "mixed ",
                            " tail"]
    assert sorted(d for d, _ in flagged(parts)) == ["sqli", "xss"]


XXE = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b"<r>&x;</r>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;">'
          b'<!ENTITY c "&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;">]><l>&d;&d;&d;</l>')


@pytest.mark.parametrize("doc", [XXE, LAUGHS])
def test_dtds_are_refused_never_expanded(doc: bytes) -> None:
    parts, parser, held = parse("text/xml", doc, split=10)
    assert parser.fallback == "refused" and held <= bound()
    assert "".join(texts(parts)) == doc.decode()  # the raw text, nothing expanded
    if doc is XXE:
        assert "path_traversal" in [d for d, _ in flagged(parts)]


@pytest.mark.parametrize(("doc", "reason"), [
    (b"<a><b>fine</b><c>" + SQLI.encode() + b"</a>", "syntax"),  # mismatched tag
    (b"<a>&nbsp;" + SQLI.encode() + b"</a>", "syntax"),  # undefined entity
    (b'<a x="1" x="2">' + SQLI.encode() + b"</a>", "syntax"),  # duplicate attributes
    (b"<a " + b"".join(b'x%d="1" ' % i for i in range(12000)) + b">" + SQLI.encode() + b"</a>",
     "too_big"),
    (b"<a>" * 300 + SQLI.encode() + b"</a>" * 300, "depth"),
    (b"<a>x</a><b>" + SQLI.encode() + b"</b>", "syntax"),  # junk after the document
])
def test_xml_the_parser_refuses_is_read_as_raw_text(doc: bytes, reason: str) -> None:
    parts, parser, held = parse("application/soap+xml", doc, split=1460)
    assert parser.fallback == reason and held <= bound()
    assert "sqli" in [d for d, _ in flagged(parts)]


# -- binary bodies -------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["application/octet-stream", "image/png", "", "video/mp4",
                                   "application/octet-stream."])
def test_binary_bodies_are_skipped_and_counted(ctype: str) -> None:
    parts, parser, held = parse(ctype, BINARY * 40, split=1460)
    assert parts == [] and parser.kind == "binary" and parser.skipped == len(BINARY) * 40
    assert held <= LIMITS.block + LIMITS.sniff


@pytest.mark.parametrize("ctype", ["application/octet-stream", "image/png", ""])
def test_text_declared_binary_is_inspected(ctype: str) -> None:
    parts, parser, _ = parse(ctype, b"id=" + SQLI.encode())
    assert parser.kind == "text" and parser.skipped == 0 and flagged(parts)


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain",
                                   "application/json", "text/xml"])
def test_form_text_json_xml_are_never_skipped(ctype: str) -> None:
    parts, parser, _ = parse(ctype, b"\0\1\2\3id=" + SQLI.encode())
    assert parser.skipped == 0 and "sqli" in [d for d, _ in flagged(parts)]


def test_looks_binary() -> None:
    assert looks_binary(b"\x89PNG\r\n\x1a\n\0\0") and looks_binary(bytes(range(1, 32)) * 4)
    assert looks_binary(random.Random(1).randbytes(1024).replace(b"\0", b"\1"))
    for text in (b"", b"plain text\r\n\tand tabs", "caf\u00e9 \u4e2d\u6587".encode() * 50,
                 "na\u00efve".encode("latin-1"), "\u00e9".encode()[:1] + b"x" * 10,
                 ("x" * 1023 + "\u00e9").encode()[:1024]):
        assert not looks_binary(text), text


# -- the captures of issue 13 ---------------------------------------------------------------------
def client_requests(path: Path) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each request the client sent, from its
    reassembled stream (gaps filled with nothing, at most 64 KiB past the end)."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    segments: dict[tuple, dict[int, bytes]] = {}
    first: dict[tuple, int] = {}
    for pkt in rdpcap(str(path)):
        if IP not in pkt or TCP not in pkt:
            continue
        tcp = pkt[TCP]
        key = (pkt[IP].src, tcp.sport, pkt[IP].dst, tcp.dport)
        if tcp.flags & 0x12 == 0x02:
            first[key] = tcp.seq + 1
        if bytes(tcp.payload):
            segments.setdefault(key, {})[tcp.seq] = bytes(tcp.payload)
    out = []
    for key, segs in segments.items():
        start, stream = first.get(key, min(segs)), bytearray()
        for seq in sorted(segs, key=lambda s: (s - start) & 0xFFFFFFFF):
            offset = (seq - start) & 0xFFFFFFFF
            if offset <= len(stream) + 65536:
                stream[offset:offset + len(segs[seq])] = segs[seq]
        pos = 0
        while (end := stream.find(b"\r\n\r\n", pos)) >= 0 and stream.startswith(b"POST", pos):
            head = stream[pos:end].decode("latin-1")
            length = re.search(r"(?im)^content-length:\s*(\d+)", head)
            ctype = re.search(r"(?im)^content-type:\s*(.*?)\s*$", head)
            size = int(length.group(1)) if length else 0
            out.append((ctype.group(1) if ctype else "", bytes(stream[end + 4:end + 4 + size])))
            pos = end + 4 + size
    return out


@pytest.mark.parametrize("name", ["no_crlf", "putty-upload", "zeek-image-post-1080-8000-x"])
def test_issue_13_uploads_pass(name: str) -> None:
    path = CORPUS / "http" / f"{name}.pcap"
    if not path.exists():
        pytest.skip("no corpus")
    requests = client_requests(path)
    assert requests
    for ctype, body in requests:
        assert flagged([(body.decode("latin-1"), False)])  # the body as one value: flagged
        parts, parser, held = parse(ctype, body, split=1448)
        assert not flagged(parts), (name, flagged(parts))
        assert parser.skipped > len(body) * 0.9 and held <= bound()


# -- properties ----------------------------------------------------------------------------------
CTYPES = ["application/x-www-form-urlencoded", MP, "application/json", "text/xml", "",
          "text/plain", "image/png", "multipart/form-data"]
PIECES = [b"--XyZ123", b"\r\n", b"\n", b"Content-Disposition: form-data; name=\"a\"",
          b"; filename=\"f\"", b"Content-Type: application/json", b"{", b"}", b"[", b"]",
          b'"', b"\\u", b"d83d", b"\\", b"<a>", b"</a>", b"<b x='1'>", b"&amp;", b"<!DOCTYPE",
          b"=", b"&", b"+", b"%27", b"'", b"\0", b"\xff", b"\xc3\xa9", b"x" * 40, b"--"]
bodies = st.one_of(st.binary(max_size=600),
                   st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join))
SMALL = BodyLimits(max_value=64, overlap=16, block=16, sniff=32, max_buffer=256, max_depth=8,
                   part_headers=4, part_header_size=64)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(CTYPES), bodies, st.lists(st.integers(0, 600), max_size=12),
       st.booleans(), st.sampled_from([LIMITS, SMALL]))
def test_any_split_gives_the_same_parts_and_nothing_raises(ctype: str, body: bytes,
                                                           cuts: list[int], cut: bool,
                                                           limits: BodyLimits) -> None:
    whole, parser, _ = parse(ctype, body, limits=limits, cut=cut)
    split, _, held = parse(ctype, body, split=[c for c in cuts if c < len(body)], limits=limits,
                           cut=cut)
    assert split == whole
    assert held <= bound(limits)
    assert parser.held == 0 and parser.skipped <= len(body)
    for text, plus in whole:
        assert isinstance(text, str) and text and len(text) <= limits.max_value
        fold(decode_value(text, plus))  # the Parts decode without raising


def _form(draw_pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{k}={v}" for k, v in draw_pairs).encode()


words = st.text(st.characters(codec="utf-8", exclude_characters="\r\0"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_block_size_changes_nothing_on_well_formed_bodies(data) -> None:
    """The parsers themselves are split-invariant (the fixed blocks aside) on
    well-formed bodies: Parts as a multiset are the same for any block size."""
    kind = data.draw(st.sampled_from(["form", "multipart", "json", "xml"]))
    pairs = data.draw(st.lists(st.tuples(words, words), max_size=6))
    if kind == "form":
        ctype, body = "application/x-www-form-urlencoded", _form(
            [(k.replace("&", "").replace("=", ""), v.replace("&", "")) for k, v in pairs])
    elif kind == "multipart":
        ctype = MP
        body = multipart([(f'name="{k.replace(chr(34), "").replace(chr(92), "")}"',
                           v.replace("--XyZ123", "").encode()) for k, v in pairs])
    elif kind == "json":
        ctype, body = "application/json", json.dumps(dict(pairs)).encode()
    else:
        from xml.sax.saxutils import escape, quoteattr
        ctype = "text/xml"
        clean = [tuple("".join(c for c in w if c.isprintable()) for w in pair) for pair in pairs]
        body = ("<r>" + "".join(f"<i v={quoteattr(k)}>{escape(v)}</i>" for k, v in clean)
                + "</r>").encode()
    reference = Counter(parse(ctype, body)[0])
    for block in (1, 3, 64):
        limits = BodyLimits(block=block)
        assert Counter(parse(ctype, body, limits=limits)[0]) == reference, (block, body)


# -- linear work ---------------------------------------------------------------------------------
def work(ctype: str, body: bytes, feed: int = 4096) -> tuple[int, int, int]:
    """Python lines run, Parts emitted and characters emitted for one body: a
    deterministic measure of the cost (no timing)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        return tracer

    parser = body_parser(ctype, LIMITS)
    parts: list[Part] = []
    sys.settrace(tracer)
    try:
        for start in range(0, len(body), feed):
            parts += parser.feed(body[start:start + feed])
        parts += parser.finish(False)
    finally:
        sys.settrace(None)
    return count, len(parts), sum(len(t) for t in texts(parts))


PATHOLOGICAL = {
    "many_amps": ("application/x-www-form-urlencoded", lambda n: b"&" * n),
    "many_pairs": ("application/x-www-form-urlencoded", lambda n: b"a=1&" * (n // 4)),
    "many_equals": ("application/x-www-form-urlencoded", lambda n: b"=" * n),
    "many_boundaries": (MP, lambda n: b"--XyZ123\r\n\r\n\r\n" * (n // 14)),
    "partial_boundaries": (MP, lambda n: b"--XyZ123\r\n\r\n" + b"\r\n--XyZ12x" * (n // 11)),
    "many_fields": (MP, lambda n: multipart([('name="a"', b"1")] * (n // 56))),
    "crlf_preamble": (MP, lambda n: b"\r\n" * (n // 2)),
    "nested_json": ("application/json", lambda n: b"[" * n),
    "json_strings": ("application/json", lambda n: b"[" + b'"a",' * (n // 4) + b'"a"]'),
    "json_escapes": ("application/json", lambda n: b'["' + b"\\u0027" * (n // 6) + b'"]'),
    "json_surrogates": ("application/json", lambda n: b'["' + b"\\ud800" * (n // 6) + b'"]'),
    "relaxed_json": ("application/json", lambda n: b"{'" + b"a" * n),
    "xml_attributes": ("text/xml", lambda n: b"<a " + b"".join(
        b'x%d="1" ' % i for i in range(n // 9)) + b"/>"),
    "xml_elements": ("text/xml", lambda n: b"<r>" + b"<a>x</a>" * (n // 8) + b"</r>"),
    "xml_deep": ("text/xml", lambda n: b"<a>" * (n // 3)),
    "text": ("text/plain", lambda n: b"x" * n),
    "binary": ("application/octet-stream", lambda n: (BINARY * (n // len(BINARY) + 1))[:n]),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
@pytest.mark.parametrize("feed", [4096, 1])
def test_work_grows_linearly(name: str, feed: int) -> None:
    """Python lines run grow ~4x for 4x the bytes (quadratic work would be
    16x); Parts and characters handed to the detectors stay within a small
    multiple of the bytes (windows overlap; a form's raw windows double it)."""
    ctype, make = PATHOLOGICAL[name]
    sizes = (1024, 4096, 16384, 65536) if feed > 1 else (1024, 4096, 16384)
    runs = [work(ctype, make(n), feed) for n in sizes]
    for n, (_, parts, chars) in zip(sizes, runs, strict=True):
        assert parts <= n + 2 and chars <= 3 * n + 2 * LIMITS.max_value, (name, n, runs)
    for (small, _, _), (big, _, _) in zip(runs, runs[1:], strict=False):
        assert big <= 4 * small * 1.3 + 1000, (name, runs)


def test_xml_rescans_are_bounded() -> None:
    """expat 2.5 rescans a token that spans blocks from its start at each
    block: at most max_buffer / block rescans of at most max_buffer bytes, then
    the tag is given up (raw text). The bytes pending at each block bound that."""
    tag = b"<a " + b"".join(b'x%d="1" ' % i for i in range(6000)) + b"/>"  # ~60 KB
    body = b"<r>" + tag * 6 + b"</r>"
    assert len(tag) < LIMITS.max_buffer
    parser = body_parser("text/xml", LIMITS)
    rescanned = 0
    for start in range(0, len(body), LIMITS.block):  # one block, one expat call
        parser.feed(body[start:start + LIMITS.block])
        rescanned += len(parser._inner._raw)  # type: ignore[attr-defined]
    parser.finish(False)
    assert parser.fallback == ""
    assert rescanned <= (LIMITS.max_buffer // LIMITS.block) * len(body)


def test_a_closing_delimiter_alone_leaves_nothing_held() -> None:
    """Found by the property above: '--XyZ123--' and nothing else kept its 10
    bytes held (charged to the flow budget) after finish()."""
    parser = body_parser("multipart/form-data; boundary=XyZ123", LIMITS)
    parser.feed(b"--XyZ123--")
    parser.finish(False)
    assert parser.held == 0
