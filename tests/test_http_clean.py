"""Known-clean request parts: bounded, and never a way around a detector."""

from __future__ import annotations

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
