"""Rule parsing: real-world shapes load or are skipped with their reason,
syntax errors name file:line, bad input never escapes as anything but
RuleFileError; the check-rules command and the [rules] config section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_views import Pkt, http_hits, req, ruleset, sids

from ips_inline.config import ConfigError, from_dict, rule_variables
from ips_inline.rules import RuleFileError, Variables, expand, load
from ips_inline.rules.parser import parse_rule
from ips_inline.rules.vars import VarError

REAL = Path(__file__).parent / "rules" / "real_world.rules"
LOADED = {8000001 + i for i in range(22)} | {8000109}
SKIPPED = {
    8000101: "unsupported protocol tls",
    8000102: "unsupported protocol dns",
    8000103: "unsupported keyword flowbits",
    8000104: "unsupported keyword byte_test",
    8000105: "http.stat_code: responses are not inspected",
    8000106: "pcre not linear-time",
    8000107: "pcre not linear-time",
    8000108: "pcre capture into variables",
    8000110: "unknown address variable $UNDEFINED_NET",
    8000111: "responses are not inspected",
    8000112: "flow:to_client in an http rule",
    8000113: "unsupported keyword app-layer-event",
    8000114: "unknown classtype",
    8000115: "unsupported keyword to_lowercase",
    8000116: "flow:only_stream",
    8000001: "duplicate sid (first at",
}


def test_real_world_shapes_load_or_skip_with_reason() -> None:
    rs = load([str(REAL)], False, Variables.build())
    assert {r.sid for r in rs.rules} == LOADED
    assert len(rs.skipped) == len(SKIPPED)
    for s in rs.skipped:
        assert SKIPPED[s.sid] in s.reason, (s.sid, s.reason)
        assert s.file == str(REAL) and REAL.read_text().splitlines()[s.line - 1].find(
            f"sid:{s.sid};") > 0


def test_real_world_rules_read_right() -> None:
    rs = load([str(REAL)], False, Variables.build())
    by_sid = {r.sid: r for r in rs.rules}
    et = by_sid[8000001]
    assert (et.rev, et.classtype, et.severity) == (11, "web-application-attack", 1)
    assert et.metadata["created_at"] == ["2010_07_30"] and len(et.metadata) == 6
    assert [b for b, _ in et.groups] == ["http.uri"]
    vundo = by_sid[8000004]
    assert vundo.http and vundo.phase == "head"
    assert [b for b, _ in vundo.groups] == ["stream", "http.uri"]
    assert by_sid[8000003].msg == "ET POLICY curl User-Agent Outbound"
    assert by_sid[8000018].bidirectional and by_sid[8000018].severity == 1
    assert by_sid[8000021].msg == 'escapes "quoted" ; here'
    assert by_sid[8000021].groups[0][1][0].pattern == b'a;b;c"d'


def test_real_world_rules_match() -> None:
    rs = load([str(REAL)], False, Variables.build())
    union = req("/news.php?id=1%20UNION%20SELECT%201,2")
    assert 8000001 in sids(http_hits(rs, union))
    assert 8000001 not in sids(http_hits(rs, req("/union-station/select-a-train")))
    no_referer = req("/form", "POST", body=b"a=1")
    assert 8000014 in sids(http_hits(rs, no_referer))
    with_referer = req("/form", "POST", body=b"a=1", Referer="https://www.example.com/")
    assert 8000014 not in sids(http_hits(rs, with_referer))
    ua = "Mozilla/5.0 (Windows; U; Windows NT 5.1) Gecko/2008 Firefox/3.5.1"
    assert 8000012 in sids(http_hits(rs, req("/", ua=ua)))
    assert 8000012 not in sids(http_hits(rs, req("/", ua=ua.replace("3.5.1", "3.6.13"))))
    token = req("/", X_Token="0123456789abcdef0123456789abcdef")
    assert 8000020 in sids(http_hits(rs, token))


def test_comments_blank_lines_and_continuations(tmp_path: Path) -> None:
    rs = ruleset("\n# alert tcp any any -> any any (sid:1;)\n   \n"
                 'alert tcp any any -> any any (msg:"a"; \\\n  content:"x"; \\\n  sid:2;)\n'
                 'alert tcp any any -> any any (msg:"b"; sid:3;)\n', tmp_path)
    assert [(r.sid, r.line) for r in rs.rules] == [(2, 4), (3, 7)]


@pytest.mark.parametrize(("rule", "message"), [
    ('alert tcp any any -> any any (msg:"x"; content:"a"; sid:1;', "action proto"),
    ('alert tcp any any any -> any any (sid:1;)', "header needs 7 fields"),
    ('alert tcp any any => any any (sid:1;)', "direction"),
    ('warn tcp any any -> any any (sid:1;)', "unknown action"),
    ('alert tpc any any -> any any (sid:1;)', "unknown protocol"),
    ('alert tcp 10.0.0.0/33 any -> any any (sid:1;)', "bad address"),
    ('alert tcp any 70000 -> any any (sid:1;)', "bad port"),
    ('alert tcp [1.2.3.4 any -> any any (sid:1;)', "unbalanced"),
    ('alert tcp any any -> any any (msg:"x; sid:1;)', "quoted string"),
    ('alert tcp any any -> any any (msg:"a;b"; sid:1;)', "bad option name"),  # as Suricata
    ('alert tcp any any -> any any (msg:"x"; sid:1)', "not terminated"),
    ('alert tcp any any -> any any (content:"a"; depth:x; sid:1;)', "depth needs an integer"),
    ('alert tcp any any -> any any (content:"abc"; depth:2; sid:1;)', "shorter than"),
    ('alert tcp any any -> any any (content:"a"; content:"b"; within:0; sid:1;)', "within"),
    ('alert tcp any any -> any any (content:"a"; depth:3; distance:1; sid:1;)', "mixed"),
    ('alert tcp any any -> any any (content:"a|4|"; sid:1;)', "odd number of hex"),
    ('alert tcp any any -> any any (content:"a|zz|"; sid:1;)', "bad hex"),
    ('alert tcp any any -> any any (content:"a|41"; sid:1;)', "unterminated |hex|"),
    ('alert tcp any any -> any any (content:"a\\x"; sid:1;)', "invalid escape"),
    ('alert tcp any any -> any any (content:""; sid:1;)', "empty content"),
    ('alert tcp any any -> any any (content:abc; sid:1;)', "quoted string"),
    ('alert tcp any any -> any any (nocase; content:"a"; sid:1;)', "without a preceding"),
    ('alert tcp any any -> any any (content:"a";)', "no sid"),
    ('alert tcp any any -> any any (content:"a"; sid:x;)', "sid needs an integer"),
    ('alert tcp any any -> any any (pcre:a; sid:1;)', "quoted string"),
    ('alert tcp any any -> any any (pcre:"a"; sid:1;)', "/pattern/flags"),
    ('alert tcp any any -> any any (pcre:"/a/K"; sid:1;)', "unknown pcre flag"),
    ('alert tcp any any -> any any (pcre:"/a/UH"; sid:1;)', "two buffer flags"),
    ('alert tcp any any -> any any (flow:sideways; sid:1;)', "bad flow option"),
    ('alert tcp any any -> any any (flags:SX; sid:1;)', "bad TCP flag"),
    ('alert tcp any any -> any any (dsize:many; sid:1;)', "dsize needs"),
    ('alert tcp any any -> any any (dsize:9<>3; sid:1;)', "empty"),
    ('alert tcp any any -> any any (threshold:type often, track by_src, count 1, seconds 1; '
     'sid:1;)', "threshold type"),
    ('alert tcp any any -> any any (threshold:type limit, track by_ip, count 1, seconds 1; '
     'sid:1;)', "threshold track"),
    ('alert tcp any any -> any any (detection_filter:track by_src, count 0, seconds 1; sid:1;)',
     "count 0 out of range"),
    ('alert udp any any -> any any (http.uri; content:"a"; sid:1;)', "http keywords in a udp"),
    ('alert http any any -> any any (http.host; content:"Example"; sid:1;)', "lowercase"),
    ('alert tcp any any -> any any (content:"abc"; fast_pattern:2,5; sid:1;)', "fast_pattern"),
    ('alert tcp any any -> any any (urilen:5,odd; sid:1;)', "urilen takes"),
])
def test_syntax_errors_name_file_and_line(rule: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.rules"
    path.write_text(f'# first\nalert tcp any any -> any any (msg:"ok"; sid:99;)\n{rule}\n')
    with pytest.raises(RuleFileError) as err:
        load([str(path)], False, Variables.build())
    text = str(err.value)
    assert text.startswith(f"{path}:3: "), text
    assert message in text, text
    assert "\n" not in text


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load([str(tmp_path / "missing.rules")], False, Variables.build())
    with pytest.raises(RuleFileError, match="cannot read"):
        load([str(tmp_path)], False, Variables.build())


def test_user_rule_replaces_a_shipped_one(tmp_path: Path) -> None:
    rs = ruleset('alert http any any -> any any (msg:"mine"; http.user_agent; content:"sqlmap/";'
                 ' nocase; sid:1100001; rev:2;)\n', tmp_path, default=True)
    mine = [r for r in rs.rules if r.sid == 1100001]
    assert len(mine) == 1 and mine[0].action == "alert" and mine[0].rev == 2
    hits = http_hits(rs, req("/", ua="sqlmap/1.8"))
    assert [(h.sid, h.action) for h in hits] == [(1100001, "alert")]


def test_skipped_rule_is_logged_with_file_line_sid_and_keyword(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ruleset('alert tcp any any -> any any (content:"a"; byte_jump:2,0; sid:7;)\n', tmp_path)
    assert any("test.rules:1" in r.getMessage() and "sid 7" in r.getMessage()
               and "byte_jump" in r.getMessage() for r in caplog.records)


def test_expand_globs(tmp_path: Path) -> None:
    (tmp_path / "b.rules").write_text("")
    (tmp_path / "a.rules").write_text("")
    assert expand([str(tmp_path / "*.rules")]) == [str(tmp_path / "a.rules"),
                                                    str(tmp_path / "b.rules")]
    with pytest.raises(RuleFileError, match="no rule file matches"):
        expand([str(tmp_path / "*.nope")])


_OPTIONS = st.sampled_from([
    'content:"a"', 'content:!"b"', "nocase", "depth:3", "offset:1", "distance:0", "within:4",
    "startswith", "endswith", 'pcre:"/a+b/i"', 'pcre:"/(?=x)/"', "http.uri", "http.header",
    "http_uri", "isdataat:1,relative", "dsize:>2", "flags:S", "flow:established",
    "threshold:type limit, track by_src, count 1, seconds 1", "bsize:<9", "fast_pattern",
    "sid:1", "msg:\"x\"", "metadata:a b", 'content:"|0', "urilen:>1", "flowbits:set,x", ";", "(",
    '"', "\\",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPTIONS, max_size=10), st.sampled_from(["tcp", "http", "udp", "ip", "dns"]))
def test_random_option_soup_never_crashes(opts: list[str], proto: str) -> None:
    text = f"alert {proto} any any -> any any ({'; '.join(opts)}; sid:5;)"
    try:
        rule = parse_rule(text, Variables.build(), "f", 1)
    except ValueError:  # Invalid and Unsupported are ValueErrors: the two ends allowed
        return
    assert rule.sid in (1, 5)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_rule_file_never_crash(tmp_path_factory: pytest.TempPathFactory,
                                                 data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.rules"
    path.write_bytes(data)
    try:
        rs = load([str(path)], False, Variables.build())
    except RuleFileError:
        return
    rs.match_packet(Pkt(payload=data), None, 0.0)
    http_hits(rs, req("/", body=data))


# -- variables and config ------------------------------------------------------

def test_variable_cycles_and_unknowns_are_errors() -> None:
    with pytest.raises(VarError, match="nest too deep"):
        Variables.build(extra=["A_NET=$B_NET", "B_NET=$A_NET"])
    with pytest.raises(VarError, match="unknown port variable"):
        Variables.build(http_ports=["$NOPE_PORTS"])


def test_rules_config_section() -> None:
    cfg = from_dict({"rules": {"files": ["/etc/ips-inline/rules/*.rules"], "default": False,
                               "home_net": ["198.51.100.0/24", "2001:db8::/32"],
                               "vars": ["SQL_SERVERS=[198.51.100.5]", "DB_PORTS=[3306,5432]"]}})
    assert cfg.rules.default is False and cfg.rules.files == ["/etc/ips-inline/rules/*.rules"]
    v = rule_variables(cfg.rules)
    assert v.address("$SQL_SERVERS").match(bytes((198, 51, 100, 5)))
    assert v.port("$DB_PORTS").match(5432) and not v.port("$DB_PORTS").match(80)
    assert not v.address("$EXTERNAL_NET").match(bytes((198, 51, 100, 7)))


@pytest.mark.parametrize(("raw", "needle"), [
    ({"rules": {"home_net": ["10.0.0.0/33"]}}, "rules.home_net"),
    ({"rules": {"external_net": ["$NOPE"]}}, "rules.external_net"),
    ({"rules": {"http_ports": ["99999"]}}, "rules.http_ports"),
    ({"rules": {"http_ports": []}}, "rules.http_ports"),
    ({"rules": {"vars": ["NOEQUALS"]}}, "rules.vars"),
    ({"rules": {"files": "one.rules"}}, "rules.files"),
    ({"rules": {"default": "yes"}}, "rules.default"),
    ({"rules": {"max_tracked": 0}}, "rules.max_tracked"),
    ({"rules": {"nope": 1}}, "rules.nope"),
])
def test_rules_config_errors_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- check-rules ---------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ips_inline.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_check_rules_reports_loaded_and_skipped() -> None:
    res = _cli("check-rules", str(REAL))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{REAL}: {len(LOADED)} loaded, {len(SKIPPED)} skipped"
    assert f"  {REAL}:52 sid 8000101: unsupported protocol tls" in lines
    assert lines[-1] == f"total: {len(LOADED)} loaded, {len(SKIPPED)} skipped"
    assert "Traceback" not in res.stderr


def test_check_rules_with_the_default_set() -> None:
    res = _cli("check-rules", "--default", str(REAL))
    assert res.returncode == 0
    assert any(line.endswith("default.rules: 65 loaded, 0 skipped")
               for line in res.stdout.splitlines())


def test_check_rules_syntax_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rules"
    bad.write_text('alert tcp any any -> any any (sid:1;)\nalert tcp any any -> any any '
                   '(content:"a"; depth:x; sid:2;)\n')
    res = _cli("check-rules", str(bad))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == f"{bad}:2: depth needs an integer, got 'x'"
    res = _cli("check-rules", str(tmp_path / "missing.rules"))
    assert res.returncode == 2 and "cannot read" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
