"""The second SQLi layer (detectors/sqli_layers.py): the stacked queries and
comment-split keywords libinjection misses are caught; the project's SQLi
lists stay caught (by one layer or the other); its benign look-alikes, and
more prose, CSS, code and JSON with semicolons and comments, stay clean; the
work is linear in the value's length."""

from __future__ import annotations

import sys
from urllib.parse import unquote_plus

import libinjection
import pytest
from test_detectors import ATTACKS as QUERY_ATTACKS
from test_detectors import BENIGN as BENIGN_TARGETS
from test_evasion import ATTACKS as VALUE_ATTACKS
from test_evasion import BENIGN_VALUES

from ips_inline.detectors.sqli_layers import stacked_or_split
from ips_inline.http.normalize import decode_value


def libinjection_sqli(value: str) -> bool:
    return bool(libinjection.is_sql_injection(value)["is_sqli"])


# The two forms of issue 13, which libinjection misses.
MISSED = ["'; SELECT * FROM accounts;--", "1 UN/**/ION SEL/**/ECT password FROM users--"]

STACKED = [
    "'; SELECT * FROM accounts;--", "1; DROP TABLE users", "'; EXEC xp_cmdshell 'dir'--",
    "'; shutdown--", "1'; DROP TABLE users--", "x');select pg_sleep(5)--",
    "1;select password,username from users", "';update users set pw='x'--",
    "' ; delete from logs --", "1'; insert into admins values('a')--",
    "';declare @x varchar(99)--", "'; waitfor delay '0:0:5'--", "1; exec('xp_cmdshell dir')",
    "';  SELECT @@version--", "'/**/;/**/SELECT/**/*/**/FROM/**/users",
    "1);truncate table logs;--", "\";CREATE USER eve IDENTIFIED BY 'x'--",
    "'; exec master..xp_cmdshell 'ping 10.0.0.1'--", "1;;drop table users",
    "';\tSELECT\tname\tFROM\tsys.tables--", "' ;\nselect * from users", "1; call evil(1)",
    "';COPY cmd FROM PROGRAM 'id'--", "'; set @a = 1--", "1]; select user()",
    "';" + " " * 500 + "select password from users",
    "';/*" + "x" * 200 + "*/SELECT * FROM accounts",
]
SPLIT = [
    "UN/**/ION SEL/**/ECT", "SEL/*x*/ECT password FROM users", "1 UN/**/ION SEL/**/ECT 1,2",
    "SE/**/LE/**/CT * FROM t", "1' OR/**/DER BY 3--", "1 /*!50000UNION*/ /*!50000SELECT*/ 1",
    "/*!UNION*/ SELECT 1", "1/*!12345union*/select", "x' AN/**/D 1=1--",
    "1 un/*comment*/ion all sel/*x*/ect null--", "/*!50000" + " " * 40 + "SELECT*/ 1",
    "1'/**/UNI/**/ON/**/SEL/**/ECT/**/1--",
]
BENIGN = [
    "O'Brien; select the best option", "Pick one; select the best option from the list",
    "email me; I'm around", "a;b", "color:red;background:blue", "1; update me later",
    "union station", "rock & roll; 2 tickets", "Room 12; select your seat",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "/* not a comment */ hello", "/*! normalize.css v8.0.1 | MIT License */", "a/*b*/c",
    '{"a": 1; "b": 2}', "Use SELECT * FROM table to list rows; then add a WHERE clause.",
    "In SQL a semicolon ends a statement; SELECT and UPDATE are statements.",
    "Step 3; drop the table cloth", "Call me at 5; call back later", "$x = 1; delete $y;",
    "body{margin:0;padding:0}/* reset */a{color:#00f}", "int main() { return 0; /* done */ }",
    "for (i = 0; i < 10; i++) { total += i; }", "Tea; coffee; juice", "Q3 (2024); update due",
    "See pages 10-12; select chapters are online", "He said 'yes'; insert coin to play",
    "x = 5; delete from the list what you do not need", "/*! jQuery v3.7.1 | (c) OpenJS */",
    "/*! Select2 4.0.13 | https://github.com/select2/select2 */", "2 lbs; exec chef special",
    "https://example.com/a;jsessionid=ABC123?x=1", "text/html;q=0.9,*/*;q=0.8",
    "Item 7; set aside for later", "1;2;3;4", "'quoted'; then more", "50%; create an account",
    "Update: it works; selecting the right table matters", "Ver. 2; drop-in replacement",
    "pro/*tip*/gram", "C:\\temp\\a;b", "note: semi;colon", "<p>Hi;</p>",
]


@pytest.mark.parametrize("value", MISSED)
def test_issue_13_forms_are_missed_by_libinjection_and_caught_here(value: str) -> None:
    assert not libinjection_sqli(value)
    assert stacked_or_split(value)


@pytest.mark.parametrize("value", STACKED + SPLIT)
def test_variants_are_caught(value: str) -> None:
    assert stacked_or_split(value), value


@pytest.mark.parametrize("value", BENIGN)
def test_prose_code_and_css_stay_clean(value: str) -> None:
    assert not stacked_or_split(value)


def test_project_benign_look_alikes_stay_clean() -> None:
    values = list(BENIGN_VALUES)
    for target in BENIGN_TARGETS:  # /path?q=... as the sqli detector sees each value
        path, _, query = target.partition("?")
        values.append(path)
        for pair in query.split("&"):
            values.append(decode_value(pair.partition("=")[2] or pair, True))
    noisy = [v for v in values if stacked_or_split(v)]
    assert not noisy


def test_project_sqli_lists_stay_caught_by_the_two_layers() -> None:
    """The lead ORs this layer into the sqli detector: nothing libinjection
    catches can be lost, and each listed attack is caught by one of them."""
    values = [decode_value(t.partition("=")[2], True) for t in QUERY_ATTACKS["sqli"]]
    values += VALUE_ATTACKS["sqli"]
    missed = [v for v in values if not (libinjection_sqli(v) or stacked_or_split(v))]
    assert not missed


def _lines_run(func, value: str) -> int:
    """Python lines executed by func(value): a deterministic measure of work."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        return tracer

    sys.settrace(tracer)
    try:
        func(value)
    finally:
        sys.settrace(None)
    return count


PATHOLOGICAL = {
    "semicolons": lambda n: ";" * n,
    "closed_semicolons": lambda n: "';" * (n // 2),
    "select_candidates": lambda n: "1; select a, b, c " * (n // 18),
    "long_whitespace": lambda n: "'; " + " " * n + "x",
    "comments": lambda n: "a/**/" * (n // 5),
    "unterminated_comments": lambda n: "a/*" * (n // 3),
    "versioned": lambda n: "/*!1" * (n // 4),
    "comment_chain": lambda n: "SE/**/" * (n // 6),
    "closers_and_comments": lambda n: "1/*x*/;" * (n // 7),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_work_grows_linearly(name: str) -> None:
    make = PATHOLOGICAL[name]
    work = [_lines_run(stacked_or_split, make(n)) for n in (1024, 4096, 16384, 65536)]
    for small, big in zip(work, work[1:], strict=False):
        assert big <= 4 * small * 1.25 + 64, (name, work)  # 4x the input: ~4x the work


def test_never_raises_on_odd_text() -> None:
    for value in ["", ";", "/*", "*/", "/*!", ";" * 3 + "/*" * 3, "\x00;\ud800 select *",
                  "'; SELECT" + "\u00a0" * 3 + "* FROM x", unquote_plus("%ff%fe;drop+table+x")]:
        assert stacked_or_split(value) in (True, False)
