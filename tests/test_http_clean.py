"""Known-clean request parts: bounded, and never a way around a detector."""

from __future__ import annotations

from conftest import Harness
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import CLIENT, Conn, http_get

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


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "Z", "0", "9", "_", "-", ".", "..", "ini", "INI",
                                 "win", "boot", "etc", "passwd", "or", "1", "union",
                                 "select", "script", "id", "cat"]), max_size=8).map("".join))
def test_inert_values_are_values_no_payload_detector_fires_on(text: str) -> None:
    """The engine skips inert values before the payload detectors: for any of
    them, every detector must stay quiet on the value alone."""
    from ips_inline.http.request import HttpRequest, inert

    if not text or not inert(text):
        return
    h = Harness()
    req = HttpRequest(b"GET / HTTP/1.1")
    req.select([(text, True), (text, False)])
    flow = type("F", (), {"request": req})()
    for det in h.engine._payload:
        assert det.inspect(None, flow, 0.0) is None, (det.name, text)


def test_what_is_not_inert() -> None:
    from ips_inline.http.request import inert

    for text in ("win.ini", "BOOT.INI", "..", "a..b", "1;", "a b", "x'", "%27", "a+b", "a/b",
                 "<b>", "&amp;", "a=b"):
        assert not inert(text), text
    for text in ("page", "24", "9a9a80fdea7b5bf5", "GA1.1.8891869609", "en-US", "a_b"):
        assert inert(text), text
