"""Known-clean request parts: bounded, and never a way around a detector."""

from __future__ import annotations

from conftest import Harness
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import CLIENT, Conn, http_get, tcp

from ips_inline.http.clean import CleanValues


def test_unseen_keeps_order_and_counts_hits() -> None:
    cache = CleanValues(maxlen=3, max_chars=10)
    cache.add([("a", False), ("b", True)])
    assert cache.unseen([("b", True), ("c", False), ("a", False), ("b", False)]) == [
        ("c", False), ("b", False)]  # "b" decoded without "+" -> " " is another part
    assert cache.hits == 2


def test_bounded_oldest_out_and_long_parts_not_kept() -> None:
    cache = CleanValues(maxlen=3, max_chars=10)
    cache.add([(str(i), False) for i in range(5)] + [("x" * 11, False)])
    assert len(cache) == 3
    assert cache.unseen([("0", False), ("4", False), ("x" * 11, False)]) == [
        ("0", False), ("x" * 11, False)]


UA = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n"


def test_a_known_clean_header_does_not_hide_a_new_attack(harness) -> None:
    for i in range(3):  # the same user agent and path become known clean
        conn = Conn(src=CLIENT, sport=41000 + i)
        assert all(harness.feed(*conn.handshake(), conn.send(http_get(f"/s?q=w{i}", UA))))
    assert harness.engine._clean.hits >= 4
    for i, target in enumerate(("/s?q=1' or '1'='1", "/s?q=w0&x=<script>alert(1)</script>")):
        conn = Conn(src=f"10.77.0.{50 + i}")  # one source each: a ban must not hide an alert
        assert not harness.feed(*conn.handshake(), conn.send(http_get(target, UA)))[-1]
    assert harness.alert_detectors() == ["sqli", "xss"]


def test_parts_of_an_attacking_request_are_not_learned(harness) -> None:
    attack = http_get("/s?q=1' or '1'='1", UA)
    for i in range(2):  # the same attack twice: looked at, and caught, both times
        conn = Conn(src=f"10.77.0.{60 + i}")
        assert not harness.feed(*conn.handshake(), conn.send(attack))[-1]
    assert len(harness.alerts("sqli")) == 2


def test_a_reload_forgets_what_was_clean(harness) -> None:
    conn = Conn(src=CLIENT)
    harness.feed(*conn.handshake(), conn.send(http_get("/s?q=x", UA)))
    assert len(harness.engine._clean) > 0
    harness.engine.reconfigure(harness.cfg)
    assert len(harness.engine._clean) == 0


def fired(h: Harness, text: str, plus: bool = False) -> list[str]:
    """The payload detectors that fire on this one value."""
    from ips_inline.http.request import HttpRequest
    from ips_inline.packet.decode import decode
    from ips_inline.packet.flows import Flow

    req = HttpRequest(b"GET / HTTP/1.1")
    req.select([(text, plus)])
    # Real objects: the compiled detectors check the types of what they get.
    pkt = decode(tcp(flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n"))
    flow = Flow(pkt.src, pkt.sport, 0.0, 0, True)
    flow.request = req
    return [det.name for det in h.engine._payload if det.inspect(pkt, flow, 0.0) is not None]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "Z", "0", "9", "_", "-", ".", "..", "ini", "INI",
                                 "win", "boot", "etc", "passwd", "or", "1", "union",
                                 "select", "script", "id", "cat"]), max_size=8).map("".join))
def test_inert_values_are_values_no_payload_detector_fires_on(text: str) -> None:
    """The engine skips inert values before the payload detectors: for any of
    them, every detector must stay quiet on the value alone."""
    from ips_inline.http.request import inert

    if not text or not inert(text):
        return
    h = Harness()
    assert fired(h, text, True) == fired(h, text, False) == [], text


_HOSTILE = ["'", "|", "1", "or", "-", "&", "$", "`", "=", ";", " ", "a", "*", "/", ",", "#",
            "~", "^", "+", "%27", '"', "sleep", "id", "x.y", "!", "(", ")", "<", ">", "W/", ":"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_HOSTILE), min_size=1, max_size=6).map("".join))
def test_a_header_value_skipped_as_well_formed_is_one_no_detector_fires_on(text: str) -> None:
    """Values that fit a header's fixed grammar are never inspected, so the
    grammars must not admit what a detector fires on (`Connection: |id`,
    `Pragma: 'or'`, `If-None-Match: "|id"`, `Host: 1--` all got through).
    The one known exception: a media range `type/*` in Accept, which
    libinjection reads as a word and a comment."""
    from ips_inline.http.request import _GRAMMARS, well_formed

    names = [name for name in _GRAMMARS if well_formed(name, text)]
    if not names:
        return
    hits = fired(Harness(), text)
    if hits and names == ["accept"] and text.endswith("/*"):
        return
    assert hits == [], (names, text)


def test_real_header_values_stay_well_formed() -> None:
    """What browsers, curl and servers send: still skipped, not inspected."""
    from ips_inline.http.request import well_formed

    for name, value in [
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                   "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
        ("accept", "image/*"), ("accept", "*/*"),
        ("content-type", "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
        ("content-type", "multipart/form-data; boundary=-----------------------------"
                         "9051914041544843365972754266"),
        ("content-type", "application/x-www-form-urlencoded; charset=UTF-8"),
        ("content-type", 'text/xml; charset="utf-8"'),
        ("if-none-match", '"5f1a2b3c-1a2b"'), ("if-none-match", 'W/"2aa6-5d3a8c1b7e0c0"'),
        ("if-none-match", '"33a64df551425fcc55e4d42a148795d9f25f89d4"'),
        ("cache-control", "max-age=0"), ("cache-control", 'no-cache="set-cookie"'),
        ("connection", "keep-alive, Upgrade"), ("upgrade", "websocket"), ("upgrade", "HTTP/2.0"),
        ("transfer-encoding", "gzip, chunked"), ("pragma", "no-cache"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9,de;q=0.8"), ("host", "example.com:8080"),
    ]:
        assert well_formed(name, value), (name, value)


def test_an_internationalised_host_is_inspected_and_passes(harness) -> None:
    """`xn--` hosts hold `--`, so they are inspected: and found clean."""
    from ips_inline.http.request import well_formed

    host = "xn--bcher-kva.xn--p1ai"
    assert not well_formed("host", host)
    assert fired(harness, host) == []


def test_what_is_not_inert() -> None:
    from ips_inline.http.request import inert

    for text in ("win.ini", "BOOT.INI", "..", "a..b", "1--", "0--a", "1;", "a b", "x'", "%27",
                 "a+b", "a/b", "<b>", "&amp;", "a=b"):
        assert not inert(text), text
    for text in ("page", "24", "9a9a80fdea7b5bf5", "GA1.1.8891869609", "en-US", "a_b"):
        assert inert(text), text


def test_injections_in_headers_of_fixed_grammar_are_blocked(harness) -> None:
    """CGI hands every header to the program as HTTP_*: a Pragma or an
    If-None-Match is as much an input as a query parameter."""
    for i, header in enumerate(("Pragma: no-cache, |id", "Connection: keep-alive, `id`",
                                "If-None-Match: \"1';sleep 5;'\"", "Cache-Control: 'or'1'='1")):
        conn = Conn(src=f"10.77.0.{70 + i}")
        verdicts = harness.feed(*conn.handshake(), conn.send(http_get("/", f"{header}\r\n")))
        assert not verdicts[-1], header
