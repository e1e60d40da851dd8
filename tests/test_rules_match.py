"""Matching, keyword by keyword: each one matches where Suricata would and
does not where Suricata would not."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_views import Flow, Pkt, http_hits, ip, req, ruleset, sids

from ips_inline.rules import Variables
from ips_inline.rules.buffers import HttpBuffers, normalize_uri
from ips_inline.rules.match import STEP_BUDGET


def http_rule(opts: str, tmp: Path, action: str = "alert", header: str = "any any -> any any"
              ) -> object:
    return ruleset(f"{action} http {header} (msg:\"t\"; {opts} sid:9;)\n", tmp)


def hits_http(opts: str, r: object, tmp: Path, **kw: object) -> bool:
    return 9 in sids(http_hits(http_rule(opts, tmp), r, **kw))


def hits_pkt(opts: str, pkt: Pkt, tmp: Path, proto: str = "tcp",
             header: str = "any any -> any any", flow: Flow | None = None) -> bool:
    rs = ruleset(f"alert {proto} {header} (msg:\"t\"; {opts} sid:9;)\n", tmp)
    return 9 in sids(rs.match_packet(pkt, flow, 0.0))


def payload(data: bytes) -> Pkt:
    return Pkt(payload=data)


# -- content and its modifiers ------------------------------------------------

@pytest.mark.parametrize(("opts", "data", "expected"), [
    ('content:"abc";', b"xxabcxx", True),
    ('content:"abc";', b"xxABCxx", False),
    ('content:"abc"; nocase;', b"xxABCxx", True),
    ('content:"a|0d 0a|b";', b"a\r\nb", True),
    ('content:"|61 62|c";', b"abc", True),
    ('content:"|61 62|c";', b"ab c", False),
    ('content:"a\\;b";', b"a;b", True),
    ('content:"a\\"b";', b'a"b', True),
    ('content:"abc"; depth:3;', b"abcd", True),
    ('content:"abc"; depth:3;', b"xabc", False),
    ('content:"abc"; offset:1;', b"xabc", True),
    ('content:"abc"; offset:2;', b"xabc", False),
    ('content:"abc"; offset:1; depth:3;', b"xabcd", True),
    ('content:"abc"; offset:1; depth:3;', b"xxabc", False),
    ('content:"abc"; startswith;', b"abcx", True),
    ('content:"abc"; startswith;', b"xabc", False),
    ('content:"abc"; endswith;', b"xxabc", True),
    ('content:"abc"; endswith;', b"abcx", False),
    ('content:"ab"; content:"cd"; distance:0;', b"abcd", True),
    ('content:"ab"; content:"cd"; distance:1;', b"abcd", False),
    ('content:"ab"; content:"cd"; distance:1;', b"abxcd", True),
    ('content:"ab"; content:"cd"; within:2;', b"abcd", True),
    ('content:"ab"; content:"cd"; within:2;', b"abxcd", False),
    ('content:"ab"; content:"cd"; distance:1; within:2;', b"abxcd", True),
    ('content:"ab"; content:"cd"; distance:1; within:2;', b"abxxcd", False),
    ('content:"bcd"; content:"ab"; distance:-4; within:2;', b"abcd", True),
    ('content:"ab"; content:"ab"; distance:0;', b"ab", False),
    ('content:"ab"; content:"ab"; distance:0;', b"abab", True),
    ('content:"ab"; content:"cd"; distance:0; endswith;', b"abcd", True),
    ('content:"ab"; content:"cd"; distance:0; endswith;', b"abcdx", False),
    ('content:!"abc";', b"xyz", True),
    ('content:!"abc";', b"xabcx", False),
    ('content:"x"; content:!"abc"; distance:0; within:4;', b"x12abc", True),
    ('content:"x"; content:!"abc"; distance:0; within:4;', b"xabc", False),
    ('content:"abc"; content:!"abc"; depth:3;', b"xxabc", True),
    ('content:"abc"; content:!"abc"; depth:3;', b"abcxx", False),
    ('content:"abc"; fast_pattern; content:"x";', b"abcx", True),
    ('content:"abcdef"; fast_pattern:2,3; content:"x";', b"abcdefx", True),
    ('content:"abcdef"; fast_pattern:2,3;', b"cde", False),
])
def test_content(opts: str, data: bytes, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt(opts, payload(data), tmp_path) is expected


def test_relative_content_retries_earlier_occurrences(tmp_path: Path) -> None:
    # the first "a" is followed by "x"; only the second one by "b": Suricata backtracks
    assert hits_pkt('content:"a"; content:"b"; distance:0; within:1;', payload(b"axab"),
                    tmp_path)


def test_backtracking_is_bounded_and_counted(tmp_path: Path) -> None:
    rs = ruleset('alert tcp any any -> any any (content:"a"; content:"b"; distance:0; within:1;'
                 " sid:9;)\n", tmp_path)
    crafted = payload(b"a" * (STEP_BUDGET * 2) + b"b")
    assert rs.match_packet(crafted, None, 0.0) == []
    assert rs.budget_exhausted == 1
    assert sids(rs.match_packet(payload(b"a" * 100 + b"b"), None, 0.0)) == [9]


def test_empty_payload_matches_no_content_rule(tmp_path: Path) -> None:
    assert not hits_pkt('content:!"x";', payload(b""), tmp_path)


# -- isdataat, bsize, dsize -------------------------------------------------------

@pytest.mark.parametrize(("opts", "data", "expected"), [
    ("isdataat:7;", b"abcdefgh", True),
    ("isdataat:8;", b"abcdefgh", False),
    ("isdataat:!8;", b"abcdefgh", True),
    ('content:"c"; isdataat:5,relative;', b"abcdefgh", True),
    ('content:"c"; isdataat:6,relative;', b"abcdefgh", False),
    ('content:"c"; isdataat:!6,relative;', b"abcdefgh", True),
    ("dsize:8;", b"abcdefgh", True),
    ("dsize:>8;", b"abcdefgh", False),
    ("dsize:<9;", b"abcdefgh", True),
    ("dsize:2<>9;", b"abcdefgh", True),
    ("dsize:8<>9;", b"abcdefgh", False),
    ("dsize:!8;", b"abcdefgh", False),
    ("dsize:>=8;", b"abcdefgh", True),
    ('content:"abc"; bsize:8;', b"abcdefgh", True),
    ('content:"abc"; bsize:<8;', b"abcdefgh", False),
])
def test_position_and_size(opts: str, data: bytes, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt(opts, payload(data), tmp_path) is expected


# -- pcre --------------------------------------------------------------------

@pytest.mark.parametrize(("opts", "data", "expected"), [
    ('pcre:"/a[0-9]+b/";', b"xxa123bxx", True),
    ('pcre:"/a[0-9]+b/";', b"xxA123Bxx", False),
    ('pcre:"/a[0-9]+b/i";', b"xxA123Bxx", True),
    ('pcre:"/a.b/";', b"a\nb", False),
    ('pcre:"/a.b/s";', b"a\nb", True),
    ('pcre:"/^b/";', b"a\nb", False),
    ('pcre:"/^b/m";', b"a\nb", True),
    ('pcre:"/a b  c/x";', b"abc", True),
    ('pcre:"/a b#c/x";', b"ab", True),
    ('pcre:"/bc/A";', b"abc", False),
    ('pcre:"/ab/A";', b"abc", True),
    ('pcre:"/a.+b/G";', b"a1b2b", True),
    ('pcre:"/end$/";', b"the end\n", True),
    ('pcre:"/end$/E";', b"the end\n", False),
    ('pcre:"/end\\Z/";', b"the end\n", True),
    ('pcre:"/a\\hb/";', b"a\tb", True),
    ('pcre:"/a\\Rb/";', b"a\r\nb", True),
    ('pcre:"/a\\xffb/";', b"a\xffb", True),
    ('pcre:!"/evil/";', b"good", True),
    ('pcre:!"/evil/";', b"so evil", False),
    ('content:"key="; pcre:"/^[0-9]+/R";', b"key=123", True),
    ('content:"key="; pcre:"/^[0-9]+/R";', b"key=x123", False),
    ('content:"a"; pcre:"/\\Gx/R";', b"ax", False),  # \G: skipped, see the parser tests
])
def test_pcre(opts: str, data: bytes, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt(opts, payload(data), tmp_path) is expected


def test_pcre_relative_then_content(tmp_path: Path) -> None:
    opts = 'pcre:"/id=[0-9]+/"; content:"&x"; distance:0; within:2;'
    assert hits_pkt(opts, payload(b"id=12&x"), tmp_path)
    assert not hits_pkt(opts, payload(b"id=12&&x"), tmp_path)


def test_pcre_is_linear_on_a_catastrophic_pattern(tmp_path: Path) -> None:
    # (a+)+b backtracks exponentially in PCRE or Python re; RE2 answers at once
    assert not hits_pkt('pcre:"/(a+)+b/";', payload(b"a" * 16000), tmp_path)


@pytest.mark.parametrize(("flag", "r"), [
    ("U", req("/x%41y")), ("I", req("/x%41y")),
    ("H", req("/", X_Q="xAy")), ("D", req("/", X_Q="xAy")), ("M", req("/", "xAy")),
    ("C", req("/", Cookie="xAy")), ("V", req("/", ua="xAy")), ("W", req("/", Host="xay")),
    ("Z", req("/", Host="xAy")), ("P", req("/", "POST", body=b"xAy")),
])
def test_pcre_buffer_flags(flag: str, r: object, tmp_path: Path) -> None:
    pattern = "x%41y" if flag == "I" else ("xay" if flag == "W" else "xAy")
    assert hits_http(f'pcre:"/{pattern}/{flag}";', r, tmp_path)
    assert not hits_http(f'pcre:"/{pattern}/{flag}";', req("/other", ua="other"), tmp_path)


ODD_HOST = "WWW.Example.COM:8080"


# -- HTTP buffers --------------------------------------------------------------

@pytest.mark.parametrize(("opts", "r", "expected"), [
    ('http.uri; content:"/a b";', req("/a%20b"), True),
    ('http.uri.raw; content:"/a%20b";', req("/a%20b"), True),
    ('http.uri.raw; content:"/a b";', req("/a%20b"), False),
    ('http.uri; content:"/etc/passwd"; startswith;', req("/x/../etc/passwd"), True),
    ('http.uri; content:"/p?q=1"; startswith;', req("http://h.example:8080/p?q=1"), True),
    ('http.method; content:"POST";', req("/", "POST"), True),
    ('http.method; content:"POST";', req("/", "GET"), False),
    ('http.header; content:"X-A: 1, 2|0d 0a|";', req("/", X_A="1", headers=None), False),
    ('http.header; content:"Cookie";', req("/", Cookie="a=1"), False),
    ('http.header.raw; content:"Cookie: a=1";', req("/", Cookie="a=1"), True),
    ('http.header_names; content:"|0d 0a|Host|0d 0a|";', req("/"), True),
    ('http.user_agent; content:"curl/8"; startswith;', req("/", ua="curl/8.5"), True),
    ('http.host; content:"www.example.com"; bsize:15;', req("/", headers=[("Host", ODD_HOST)]),
     True),
    ('http.host.raw; content:"WWW.Example.COM:8080";', req("/", headers=[("Host", ODD_HOST)]),
     True),
    ('http.cookie; content:"sid=1";', req("/", Cookie="sid=1"), True),
    ('http.request_line; content:"GET /x HTTP/1.1"; startswith; endswith;', req("/x"), True),
    ('http.protocol; content:"HTTP/1.1"; bsize:8;', req("/"), True),
    ('http.request_body; content:"a=1";', req("/", "POST", body=b"a=1"), True),
    ('file.data; content:"a=1";', req("/", "POST", body=b"a=1"), True),
    ('http.referer; content:"evil";', req("/", Referer="http://evil/"), True),
    ('http.referer; content:!"evil";', req("/"), False),  # no Referer: no buffer at all
    ('http.accept; content:"*/*";', req("/"), True),
    ('http.content_type; content:"json";', req("/", Content_Type="application/json"), True),
    ('http.start; content:"GET / HTTP/1.1|0d 0a|Host";', req("/"), True),
    ('content:"GET / HTTP/1.1"; depth:14;', req("/"), True),  # plain content: the head
    ('content:"/x"; http_uri;', req("/x"), True),
    ('content:"/x"; http_uri;', req("/", X_P="/x"), False),
    ('content:"%41"; http_raw_uri;', req("/%41"), True),
    ('content:"PUT"; http_method;', req("/", "PUT"), True),
    ('content:"X-P|3a| 1"; http_header;', req("/", X_P="1"), True),
    ('content:"a"; http_cookie;', req("/", Cookie="a"), True),
    ('content:"bot"; http_user_agent;', req("/", ua="bot"), True),
    ('content:"h.example"; http_host;', req("/", headers=[("Host", "H.example")]), True),
    ('content:"H.example"; http_raw_host;', req("/", headers=[("Host", "H.example")]), True),
    ('content:"q"; http_client_body;', req("/", "POST", body=b"q"), True),
    ('uricontent:"/y";', req("/y"), True),
    ('urilen:3;', req("/ab"), True),
    ('urilen:>3;', req("/ab"), False),
    ('urilen:5,raw;', req("/%41"), False),
    ('urilen:4,raw;', req("/%41"), True),
])
def test_http_buffers(opts: str, r: object, expected: bool, tmp_path: Path) -> None:
    assert hits_http(opts, r, tmp_path) is expected


def test_header_buffer_merges_duplicates_and_skips_cookie() -> None:
    r = req("/", headers=[("Host", "h"), ("X-A", "1"), ("Cookie", "c=1"), ("x-a", "2")])
    b = HttpBuffers(r)
    assert b.get("http.header") == b"Host: h\r\nX-A: 1, 2\r\n"
    assert b.get("http.header_names") == b"\r\nHost\r\nX-A\r\nCookie\r\n\r\n"
    assert b.get("http.cookie") == b"c=1"
    assert b.get("http.user_agent") is None


@pytest.mark.parametrize("fields", [
    [("Host", "h"), ("X-A", "caf\xe9")],  # latin-1: one encode for all
    [("Host", "h"), ("X-A", "\u20ac"), ("X-B", "\xe9")],  # wider: each on its own
    [("X-A", "a\nb"), ("Host", "h")],  # LF inside a value (not from the parser)
    [("", ""), ("X", "")],
])
def test_header_bytes_are_each_field_encoded_on_its_own(fields: list[tuple[str, str]]) -> None:
    from ips_inline.rules.buffers import to_bytes

    b = HttpBuffers(req("/", headers=fields))
    assert b.headers() == [(to_bytes(n), to_bytes(v)) for n, v in fields]


@pytest.mark.parametrize(("raw", "norm"), [
    ("/a%2fb%41", "/a/bA"), ("/a/./b/../c", "/a/c"), ("/../../etc/passwd", "/etc/passwd"),
    ("/p?q=%27a%27+b", "/p?q='a'+b"), ("/%zz", "/%zz"), ("http://h/x?y", "/x?y"), ("*", "*"),
    ("/%2e%2e/x", "/x"), ("/a/b/..", "/a/"),
])
def test_uri_normalization(raw: str, norm: str) -> None:
    assert normalize_uri(raw.encode()) == norm.encode()


def test_body_rules_run_in_the_body_call_only(tmp_path: Path) -> None:
    rs = ruleset('alert http any any -> any any (http.uri; content:"/u"; sid:1;)\n'
                 'alert http any any -> any any (http.uri; content:"/u"; http.request_body; '
                 'content:"b"; sid:2;)\n', tmp_path)
    r = req("/u", "POST", body=b"b")
    assert sids(rs.match_http_head(r, Pkt(), Flow(), 0.0)) == [1]
    assert sids(rs.match_http_body(r, Pkt(), Flow(), 0.0)) == [2]


# -- flow, flags, itype, header --------------------------------------------------------

@pytest.mark.parametrize(("opts", "flow", "expected"), [
    ("flow:established;", Flow(True, True), True),
    ("flow:established;", Flow(False, True), False),
    ("flow:established;", None, False),
    ("flow:not_established;", None, True),
    ("flow:to_server;", Flow(True, True), True),
    ("flow:to_server;", Flow(True, False), False),
    ("flow:from_server;", Flow(True, False), True),
    ("flow:to_client,established;", Flow(True, False), True),
    ("flow:stateless;", None, True),
])
def test_flow(opts: str, flow: Flow | None, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt(opts, Pkt(), tmp_path, flow=flow) is expected


def test_http_rule_flow(tmp_path: Path) -> None:
    assert hits_http('flow:established,to_server; http.uri; content:"/";', req("/"), tmp_path)
    assert not hits_http('flow:established; http.uri; content:"/";', req("/"), tmp_path,
                         flow=Flow(False, True))


@pytest.mark.parametrize(("opts", "flags", "expected"), [
    ("flags:S;", 0x02, True),
    ("flags:S;", 0x12, False),
    ("flags:SA;", 0x12, True),
    ("flags:S,CE;", 0xC2, True),
    ("flags:S;", 0xC2, False),
    ("flags:+S;", 0x12, True),
    ("flags:*SF;", 0x01, True),
    ("flags:*SF;", 0x10, False),
    ("flags:!R;", 0x10, True),
    ("flags:!R;", 0x14, False),
    ("flags:0;", 0x00, True),
    ("flags:0;", 0x10, False),
    ("flags:FPU;", 0x29, True),
])
def test_tcp_flags(opts: str, flags: int, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt(opts, Pkt(flags=flags), tmp_path) is expected


def test_icmp_type(tmp_path: Path) -> None:
    echo = Pkt(proto=1, icmp_type=8, sport=0, dport=0)
    assert hits_pkt("itype:8;", echo, tmp_path, proto="icmp")
    assert not hits_pkt("itype:0;", echo, tmp_path, proto="icmp")
    assert hits_pkt("itype:>5;", Pkt(proto=58, icmp_type=128), tmp_path, proto="icmp")
    assert not hits_pkt("itype:8;", echo, tmp_path, proto="tcp")


@pytest.mark.parametrize(("header", "pkt", "expected"), [
    ("any any -> any any", Pkt(), True),
    ("203.0.113.0/24 any -> any any", Pkt(), True),
    ("!203.0.113.0/24 any -> any any", Pkt(), False),
    ("[10.0.0.0/8,203.0.113.7] any -> any any", Pkt(), True),
    ("[203.0.113.0/24,!203.0.113.7] any -> any any", Pkt(), False),
    ("203.0.113.1-203.0.113.9 any -> any any", Pkt(), True),
    ("any any -> $HOME_NET any", Pkt(), True),
    ("$EXTERNAL_NET any -> $HOME_NET any", Pkt(), True),
    ("$HOME_NET any -> any any", Pkt(), False),
    ("any any -> any 80", Pkt(), True),
    ("any any -> any !80", Pkt(), False),
    ("any any -> any [443,8000:8100]", Pkt(dport=8080), True),
    ("any any -> any [1:1024,!80]", Pkt(), False),
    ("any any -> any 1024:", Pkt(dport=1023), False),
    ("any any -> any :1023", Pkt(dport=1023), True),
    ("any any -> any $HTTP_PORTS", Pkt(dport=8080), True),
    ("any 80 -> any any", Pkt(), False),
    ("any 80 <> any any", Pkt(), True),
    ("192.168.1.10 any -> any any", Pkt(), False),
    ("192.168.1.10 any <> any any", Pkt(), True),
    ("any any -> 2001:db8::/32 any", Pkt(src=ip("2001:db8::2"), dst=ip("2001:db8::1")), True),
    ("any any -> [!2001:db8::/32] any", Pkt(src=ip("2001:db8::2"), dst=ip("2001:db8::1")),
     False),
])
def test_header(header: str, pkt: Pkt, expected: bool, tmp_path: Path) -> None:
    assert hits_pkt('content:"x";', Pkt(**{**pkt.__dict__, "payload": b"x"}), tmp_path,
                    header=header) is expected


def test_protocols(tmp_path: Path) -> None:
    udp = Pkt(proto=17, payload=b"x")
    assert hits_pkt('content:"x";', udp, tmp_path, proto="udp")
    assert not hits_pkt('content:"x";', udp, tmp_path, proto="tcp")
    assert hits_pkt('content:"x";', udp, tmp_path, proto="ip")
    assert not hits_pkt('content:"x";', Pkt(proto=1, payload=b"x"), tmp_path, proto="udp")


def test_variables_from_config(tmp_path: Path) -> None:
    rs = ruleset('alert tcp any any -> $HOME_NET $WEB_PORT (content:"x"; sid:9;)\n', tmp_path,
                 home_net=["198.51.100.0/24"], extra=["WEB_PORT=8443"])
    assert sids(rs.match_packet(Pkt(dst=ip("198.51.100.5"), dport=8443, payload=b"x"),
                                None, 0.0)) == [9]
    assert rs.match_packet(Pkt(payload=b"x", dport=8443), None, 0.0) == []


# -- actions, order, thresholds --------------------------------------------------

def test_pass_exempts_and_order_puts_drops_first(tmp_path: Path) -> None:
    rs = ruleset('alert tcp any any -> any any (content:"x"; sid:1;)\n'
                 'drop tcp any any -> any any (content:"x"; sid:2;)\n'
                 'reject tcp any any -> any any (content:"x"; sid:3;)\n'
                 'pass tcp 198.51.100.0/24 any -> any any (sid:4;)\n', tmp_path)
    got = rs.match_packet(payload(b"x"), None, 0.0)
    assert [(h.sid, h.action) for h in got] == [(2, "drop"), (3, "reject"), (1, "alert")]
    assert rs.match_packet(Pkt(src=ip("198.51.100.1"), payload=b"x"), None, 0.0) == []


def test_packet_pass_exempts_http_rules(tmp_path: Path) -> None:
    rs = ruleset('drop http any any -> any any (http.uri; content:"/x"; sid:1;)\n'
                 'drop http any any -> any any (http.request_body; content:"b"; sid:2;)\n'
                 'pass ip 198.51.100.0/24 any -> any any (sid:3;)\n'
                 'pass http any any -> any any (http.uri; content:"/x/ok"; sid:4;)\n', tmp_path)
    trusted = Pkt(src=ip("198.51.100.1"))
    assert http_hits(rs, req("/x", "POST", body=b"b"), trusted) == []
    assert sids(http_hits(rs, req("/x", "POST", body=b"b"))) == [1, 2]
    assert http_hits(rs, req("/x/ok", "POST", body=b"b")) == []  # head pass covers the body


@pytest.mark.parametrize(("spec", "acted", "logged"), [
    ("threshold:type limit, track by_src, count 2, seconds 60;",
     [True] * 5, [True, True, False, False, False]),
    ("threshold:type threshold, track by_src, count 2, seconds 60;",
     [False, True, False, True, False], [False, True, False, True, False]),
    ("threshold:type both, track by_src, count 2, seconds 60;",
     [False, True, True, True, True], [False, True, False, False, False]),
    ("detection_filter:track by_src, count 2, seconds 60;",
     [False, False, True, True, True], [False, False, True, True, True]),
])
def test_threshold_types(spec: str, acted: list[bool], logged: list[bool],
                         tmp_path: Path) -> None:
    rs = ruleset(f'drop tcp any any -> any any (content:"x"; {spec} sid:9;)\n', tmp_path)
    got = [rs.match_packet(payload(b"x"), None, float(t)) for t in range(5)]
    assert [bool(h) for h in got] == acted
    assert [bool(h) and h[0].log for h in got] == logged


def test_threshold_window_expires_and_alert_rules_stay_silent(tmp_path: Path) -> None:
    rs = ruleset('alert tcp any any -> any any (content:"x"; threshold:type limit, '
                 'track by_src, count 1, seconds 10; sid:9;)\n', tmp_path)
    times = [0.0, 5.0, 10.0, 10.5, 21.0]
    assert [len(rs.match_packet(payload(b"x"), None, t)) for t in times] == [1, 0, 0, 1, 1]


@pytest.mark.parametrize(("track", "second", "expected"), [
    ("by_src", Pkt(src=ip("203.0.113.8"), payload=b"x"), 0),
    ("by_dst", Pkt(src=ip("203.0.113.8"), payload=b"x"), 1),
    ("by_rule", Pkt(src=ip("203.0.113.8"), dst=ip("192.168.1.11"), payload=b"x"), 1),
    ("by_both", Pkt(src=ip("192.168.1.10"), dst=ip("203.0.113.7"), payload=b"x"), 1),
    ("by_both", Pkt(src=ip("203.0.113.8"), payload=b"x"), 0),
])
def test_threshold_tracks(track: str, second: Pkt, expected: int, tmp_path: Path) -> None:
    rs = ruleset(f'alert ip any any -> any any (content:"x"; detection_filter:track {track}, '
                 f'count 1, seconds 60; sid:9;)\n', tmp_path)
    assert rs.match_packet(payload(b"x"), None, 0.0) == []
    assert len(rs.match_packet(second, None, 1.0)) == expected


def test_threshold_state_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "t.rules"
    path.write_text('alert ip any any -> any any (content:"x"; detection_filter:track by_src, '
                    "count 5, seconds 60; sid:9;)\n")
    from ips_inline.rules import load
    rs = load([str(path)], False, Variables.build(), max_tracked=100)
    for i in range(1000):
        rs.match_packet(Pkt(src=i.to_bytes(4, "big"), payload=b"x"), None, 0.0)
    assert rs.tracked == 100 and rs.thresholds.evictions == 900


def test_noalert_and_metadata(tmp_path: Path) -> None:
    rs = ruleset('alert tcp any any -> any any (content:"x"; noalert; sid:1;)\n'
                 'drop tcp any any -> any any (content:"x"; noalert; sid:2;)\n'
                 'alert tcp any any -> any any (content:"x"; metadata:former_category WEB, '
                 'cve 1, cve 2; classtype:trojan-activity; priority:4; sid:3; rev:7;)\n', tmp_path)
    got = rs.match_packet(payload(b"x"), None, 0.0)
    assert [(h.sid, h.log) for h in got] == [(2, False), (3, True)]
    assert got[1].metadata == {"former_category": ["WEB"], "cve": ["1", "2"]}
    assert (got[1].rev, got[1].severity, got[1].category) == (7, 4, "A Network Trojan was detected")


def test_prefilter_candidates_only_rules_whose_pattern_is_present(tmp_path: Path) -> None:
    text = "".join(f'alert http any any -> any any (http.uri; content:"/p{i:04d}"; sid:{i + 1};)\n'
                   for i in range(500))
    rs = ruleset(text, tmp_path)
    r = req("/p0042")
    assert rs._head.candidates(HttpBuffers(r), Pkt()) == [42]
    assert sids(http_hits(rs, r)) == [43]
