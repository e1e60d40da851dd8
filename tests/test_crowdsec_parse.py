"""Go durations and LAPI's decision stream: what is accepted, what is rejected
and counted, and that nothing in an answer can raise past the parser."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ips_inline.crowdsec.decisions import BadStream, parse_stream
from ips_inline.crowdsec.duration import parse_go_duration

# An answer of the real LAPI 1.4.6 (cscli decisions add ... ; curl .../stream?startup=true).
REAL = json.loads(
    '{"deleted":[{"duration":"-20.869467ms","id":4,"origin":"ips-inline",'
    '"scenario":"ips-inline/sqli","scope":"Ip","type":"ban","value":"10.5.5.5"}],'
    '"new":[{"duration":"59m59.047844183s","id":2,"origin":"cscli",'
    '"scenario":"manual \'ban\' from \'probe\'","scope":"Range","type":"ban",'
    '"value":"10.9.0.0/16"},'
    '{"duration":"1h59m59.047842049s","id":1,"origin":"cscli",'
    '"scenario":"manual \'ban\' from \'probe\'","scope":"Ip","type":"ban","value":"10.1.2.3"},'
    '{"duration":"1h59m59.047841367s","id":3,"origin":"cscli",'
    '"scenario":"manual \'captcha\' from \'probe\'","scope":"Ip","type":"captcha",'
    '"value":"10.1.2.4"}]}')


@pytest.mark.parametrize(("text", "seconds"), [
    ("3h59m58s", 14398.0), ("1.5s", 1.5), ("-17ms", -0.017),
    ("1h59m59.659857347s", 7199.659857347), ("0", 0.0), ("-0", 0.0), ("+5m", 300.0),
    (".5s", 0.5), ("5.s", 5.0), ("300ms", 0.3), ("1us", 1e-6), ("1\u00b5s", 1e-6),
    ("1\u03bcs", 1e-6), ("7ns", 7e-9), ("2h45m0.5s", 9900.5), ("-2.102866807s", -2.102866807),
    ("2562047h", 2562047 * 3600.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("text", [
    "", "s", ".s", "5", "1x", "1d", "1.5.5s", "-", "+", " 1s", "1s ", "1e3s", "0s0",
    "9999999999999h", "2562048h", "\u0663s", "1S", "1H", "--1s", "1s-1s", "x" * 65, "1" * 70 + "s",
    5, None, 1.5, b"1s", ["1s"],
])
def test_bad_durations_raise_value_error(text: object) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_go_duration(text)


def test_real_stream() -> None:
    stream = parse_stream(REAL, 100)
    assert [(d.id, d.scope, d.value, d.origin) for d in stream.new] == [
        (2, "Range", "10.9.0.0/16", "cscli"), (1, "Ip", "10.1.2.3", "cscli")]
    assert stream.new[0].remaining == pytest.approx(3599.047844183)
    assert stream.rejected == {"not_ban": 1}  # the captcha
    assert stream.deleted == [(4, ("Ip", "10.5.5.5"))]


def test_null_lists_and_empty_answer() -> None:
    assert parse_stream({"new": None, "deleted": None}, 10).new == []
    stream = parse_stream({}, 10)
    assert stream.new == [] and stream.deleted == [] and not stream.rejected


@pytest.mark.parametrize("payload", [
    None, [], "garbage", 42, {"new": {}}, {"new": "x"}, {"deleted": 5}, {"new": [], "deleted": {}},
])
def test_answers_of_the_wrong_shape_are_rejected_whole(payload: object) -> None:
    with pytest.raises(BadStream):
        parse_stream(payload, 10)


def good(**over: object) -> dict:
    item = {"id": 9, "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf", "scope": "Ip",
            "type": "ban", "value": "192.0.2.7", "duration": "3h59m58s"}
    item.update(over)
    return item


@pytest.mark.parametrize(("item", "reason"), [
    (good(value="192.0.2.300"), "invalid"), (good(value="192.0.2.7/32"), "invalid"),
    (good(value="fe80::1%eth0"), "invalid"), (good(value=""), "invalid"),
    (good(value=None), "invalid"), (good(value=7), "invalid"), (good(value="1" * 100), "invalid"),
    (good(scope="Range", value="10.0.0.0/33"), "invalid"),
    (good(scope="Range", value="0.0.0.0/0"), "invalid"),
    (good(scope="Range", value="::/0"), "invalid"),
    (good(duration="forever"), "invalid"), (good(duration=3600), "invalid"),
    (good(duration=None), "invalid"), (good(id="9"), "invalid"), (good(id=True), "invalid"),
    (good(id=-1), "invalid"), (good(id=1 << 64), "invalid"), (good(type=None), "invalid"),
    (good(origin=5), "invalid"), (good(scenario=["x"]), "invalid"), (good(scope=None), "invalid"),
    (good(type="captcha"), "not_ban"), (good(type="throttle"), "not_ban"),
    (good(scope="Country", value="FR"), "scope"), (good(scope="AS", value="12345"), "scope"),
    ("not a dict", "invalid"), (None, "invalid"), ([1, 2], "invalid"),
])
def test_one_bad_decision_is_rejected_alone(item: object, reason: str) -> None:
    stream = parse_stream({"new": [item, good(id=10)]}, 10)
    assert [d.id for d in stream.new] == [10]
    assert stream.rejected == {reason: 1}


def test_values_are_canonical_and_scope_case_does_not_matter() -> None:
    stream = parse_stream({"new": [
        good(id=1, value="::ffff:192.0.2.9"), good(id=2, scope="ip", value="2001:DB8::1"),
        good(id=3, scope="RANGE", value="10.1.2.3/16"), good(id=4, type="Ban")]}, 10)
    assert [(d.scope, d.value) for d in stream.new] == [
        ("Ip", "192.0.2.9"), ("Ip", "2001:db8::1"), ("Range", "10.1.0.0/16"), ("Ip", "192.0.2.7")]


def test_text_from_lapi_is_made_safe_for_labels_and_logs() -> None:
    stream = parse_stream({"new": [good(origin='evil"} 1\nx', scenario="a\x1b[31mred\nline" * 20)]},
                          10)
    d = stream.new[0]
    assert d.origin == "evil___1_x"
    assert d.scenario.isprintable() and len(d.scenario) == 128
    assert parse_stream({"new": [good(origin="")]}, 10).new[0].origin == "unknown"


def test_a_huge_list_is_cut_at_max_decisions_and_counted() -> None:
    stream = parse_stream({"new": [good(id=i) for i in range(1000)],
                           "deleted": [good(id=i) for i in range(1000)]}, 100)
    assert len(stream.new) == 100 and stream.rejected["too_many"] == 900
    assert len(stream.deleted) == 100


def test_deleted_needs_only_an_id() -> None:
    stream = parse_stream({"deleted": [
        {"id": 5}, {"id": 6, "scope": "Ip", "value": "bad"}, {"id": "7"}, "x",
        {"id": 8, "scope": "Range", "value": "10.0.0.0/8", "duration": "-1s", "type": "captcha"}]},
        10)
    assert stream.deleted == [(5, None), (6, None), (8, ("Range", "10.0.0.0/8"))]
    assert stream.rejected == {"invalid": 2}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["new", "deleted", "id", "type", "scope", "value", "duration", "origin",
                         "scenario"]), kids, max_size=8),
                    max_leaves=30))
def test_any_json_parses_or_raises_bad_stream(payload: object) -> None:
    with contextlib.suppress(BadStream):
        parse_stream(payload, 50)
