"""Rules and brute force live (issue 15): Debian's hydra against a real
OpenSSH server in the victim's namespace, a normal SSH client beside it, the
shipped ruleset against scanner User-Agents, and a rule file of our own given
in the config and changed under a running daemon with SIGHUP.

sshd runs in the foreground on port 2222 with host keys, config and
authorized keys in a temporary folder and a throwaway user (ipsxssh) created
for the module; user, folder, /run/sshd (if we made it) and every process are
removed at the end, also on failure. The daemon watches port 2222 for
brute_force (detectors.brute_force.ports).
"""

from __future__ import annotations

import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest_lab import lab_fixture  # noqa: F401  (the `lab` fixture)
from e2e_helpers import Victim
from lab import Lab
from live_helpers import alerts_from, answered, attacker_sources, daemons, probe, wait_until

pytestmark = pytest.mark.netns

SSH_PORT = 2222
USER = "ipsxssh"
BRUTE_THRESHOLD = 10  # the detector's default: more than 10 proven connections in 60 s
HYDRA_TASKS = 4
# 40 common passwords, one a line (the user's random password is not among them).
WORDLIST = """\
123456 password 123456789 12345678 12345 qwerty 1234567 111111 1234567890 123123
abc123 1234 password1 iloveyou 1q2w3e4r 000000 qwerty123 zaq12wsx dragon sunshine
princess letmein 654321 monkey 27653 1qaz2wsx 123321 qwertyuiop superman asdfghjkl
trustno1 welcome admin root toor changeme raspberry ubuntu debian master
""".replace(" ", "\n")
RULE = 'drop http any any -> any any (msg:"{msg}"; http.uri; content:"{uri}"; sid:{sid}; rev:1;)\n'


@dataclass
class Sshd:
    base: Path
    key: Path  # the normal client's private key (its public key is authorized)
    log: Path


@contextmanager
def throwaway_user(name: str, home: Path) -> Iterator[str]:
    """A user with a random password (never printed), removed at the end."""
    if _exists(name):  # left by an interrupted run
        subprocess.run(["userdel", name], check=False)
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", name], check=True)
    try:
        password = secrets.token_urlsafe(18)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        yield password
    finally:
        subprocess.run(["userdel", name], check=False)
    assert not _exists(name)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def privsep_dir() -> Iterator[None]:
    """/run/sshd, which sshd needs; removed at the end if we made it."""
    path = Path("/run/sshd")
    made = not path.exists()
    if made:
        path.mkdir(mode=0o755)
    try:
        yield
    finally:
        if made:
            shutil.rmtree(path, ignore_errors=True)


def sshd_config(base: Path, lab: Lab) -> str:
    return "\n".join([
        f"ListenAddress {lab.victim4}", f"HostKey {base / 'host_ed25519'}", "PidFile none",
        "UsePAM no", "PasswordAuthentication yes", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", f"AuthorizedKeysFile {base / 'authorized_keys'}",
        "StrictModes no", "PermitRootLogin no", f"AllowUsers {USER}", "UseDNS no",
        # Three password tries per connection (a common hardening; the default 6
        # lets hydra through a 40-word list in 8 connections, under the threshold).
        "MaxAuthTries 3", "MaxStartups 100:30:200", "LoginGraceTime 20", "LogLevel VERBOSE",
        ""])


@pytest.fixture(scope="module")
def sshd(lab: Lab) -> Iterator[Sshd]:
    base = Path(tempfile.mkdtemp(prefix="ipsx-sshd-"))
    base.chmod(0o755)  # sshd reads the authorized keys as the user
    try:
        with privsep_dir(), throwaway_user(USER, base / "home"):
            for name in ("host_ed25519", "client_ed25519"):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                                "-f", str(base / name)], check=True)
            shutil.copy(base / "client_ed25519.pub", base / "authorized_keys")
            (base / "authorized_keys").chmod(0o644)
            config = base / "sshd_config"
            config.write_text(sshd_config(base, lab))
            log = base / "sshd.log"
            with open(log, "w") as out:
                proc = lab.popen("victim", ["/usr/sbin/sshd", "-D", "-e", "-f", str(config),
                                            "-p", str(SSH_PORT)], stdout=out,
                                 stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: "Server listening on" in log.read_text(), 10,
                           f"sshd listening:\n{log.read_text()}")
                yield Sshd(base, base / "client_ed25519", log)
            finally:
                lab.kill(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def victim(lab: Lab, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    """The web server and the daemon: brute_force on port 2222, and a rule
    file of ours besides the shipped ruleset."""
    lab.start_victim_http()  # killed by lab.down() at the end of the module
    work = tmp_path_factory.mktemp("rules")
    (work / "local").mkdir()
    (work / "local" / "test.rules").write_text(RULE.format(msg="test", uri="/blockme",
                                                           sid=9000001))
    extra = (f'[detectors.brute_force]\nports = ["{SSH_PORT}"]\n'
             f'[rules]\nfiles = ["{work / "local"}/*.rules"]\n')
    with daemons(lab, work) as start:
        yield start(extra)


@contextmanager
def route_from(lab: Lab, src: str) -> Iterator[None]:
    """The attacker's traffic to the victim leaves from `src` (for tools that
    cannot choose their source address)."""
    route = [f"{lab.victim4}/32", "dev", lab.iface, "src", src]
    lab.exec("attacker", ["ip", "route", "replace", *route])
    try:
        yield
    finally:
        lab.exec("attacker", ["ip", "route", "del", *route], check=False)


# -- brute force ----------------------------------------------------------------------------------
def test_hydra_against_sshd_is_banned_by_brute_force_within_its_threshold(
        lab: Lab, sshd: Sshd, victim: Victim, tmp_path: Path) -> None:
    """hydra -t 4 with a 40-word list (the password is not in it), 3 tries
    per connection: each of its SSH connections completes the handshake, so
    the kernel proves each; past 10 in 60 s the source is banned, its later
    connects fail and the rest of the list is never tried. hydra, left
    waiting on connections that go nowhere, is stopped 3 s after the ban."""
    words = tmp_path / "words.txt"
    words.write_text(WORDLIST)
    assert len(WORDLIST.split()) == 40
    with attacker_sources(lab, 51) as (src,), route_from(lab, src):
        start = time.monotonic()
        hydra = lab.popen("attacker", ["timeout", "40", "hydra", "-l", USER, "-P", str(words),
                                       "-t", str(HYDRA_TASKS), "-I", "-f", "-w", "5",
                                       f"ssh://{lab.victim4}:{SSH_PORT}"],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
        try:
            wait_until(lambda: victim.bans().get(src) == "brute_force", 30, "the ban")
            to_ban = time.monotonic() - start
            time.sleep(3)  # what hydra still gets through after the ban: nothing
            later = probe(lab, "attacker", "ssh-banners", lab.victim4, str(SSH_PORT),
                          "--source", src, "--timeout", "2", "--count", "1")
        finally:
            lab.kill(hydra)
    output = hydra.stdout.read() if hydra.stdout else ""
    lines = sshd.log.read_text().splitlines()
    reached = sum(f"Connection from {src} port" in line for line in lines)
    tried = sum(f"Failed password for {USER} from {src} " in line for line in lines)
    print(f"hydra banned after {to_ban:.1f} s; {reached} connections reached sshd, "
          f"{tried} passwords tried; later connect: {later}\n{output[-400:]}")
    assert "login:" not in output  # hydra's line for a password found
    assert later[0].startswith("error"), later
    # The 11th proven connection is dropped at its final ACK (sshd never
    # accepts it) and bans: 10 reached sshd, and the list was cut short.
    assert reached == BRUTE_THRESHOLD, reached
    assert tried < 40
    alerts = [a for a in alerts_from(victim, src)
              if a["alert"]["metadata"]["detector"] == ["brute_force"]]
    assert alerts and alerts[0]["dest_port"] == SSH_PORT


def test_a_normal_ssh_client_making_3_connections_is_not_banned(
        lab: Lab, sshd: Sshd, victim: Victim) -> None:
    """Three real logins (public key, BatchMode) from the client, then a
    fourth connection: all through, no brute_force alert."""
    for i in range(3):
        res = lab.exec("client", [
            "ssh", "-i", str(sshd.key), "-p", str(SSH_PORT), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"{USER}@{lab.victim4}",
            "echo", f"login-{i}"], check=False, timeout=30)
        assert res.returncode == 0 and res.stdout.strip() == f"login-{i}", res.stderr
    banner = probe(lab, "client", "ssh-banners", lab.victim4, str(SSH_PORT), "--count", "1")
    assert banner[0].startswith("SSH-2.0-OpenSSH"), banner
    assert sshd.log.read_text().count(f"Connection from {lab.client4} port") == 4
    assert lab.client4 not in victim.bans()
    assert not alerts_from(victim, lab.client4)


# -- the shipped rules --------------------------------------------------------------------------
SCANNER_AGENTS = {
    1100001: "sqlmap/1.7.2#stable (https://sqlmap.org)",
    1100002: "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
    1100012: "Mozilla/4.0 (Hydra)",
}


def test_scanner_user_agents_are_blocked_by_the_shipped_rules_and_the_third_bans(
        lab: Lab, victim: Victim) -> None:
    """curl -A sqlmap/..., Nikto's and Hydra's HTTP agents: each request is
    dropped by its shipped rule (the same request with curl's own agent is
    answered), and the third blocked request bans the source (rules:
    ban_after = 3, on connections the kernel proved)."""
    url = f"http://{lab.victim4}/item?id=1"
    with attacker_sources(lab, 53) as (src,):
        assert answered(lab, "attacker", url, "--interface", src)
        for agent in SCANNER_AGENTS.values():
            assert not answered(lab, "attacker", url, "--interface", src, "-A", agent,
                                timeout=2), agent
        time.sleep(1.0)  # the ban is applied off the verdict path
        banned = victim.bans().get(src)
        cut_off = not answered(lab, "attacker", url, "--interface", src, timeout=2)
    alerts = alerts_from(victim, src)
    assert [a["alert"]["signature_id"] for a in alerts] == list(SCANNER_AGENTS), alerts
    assert {a["alert"]["metadata"]["detector"][0] for a in alerts} == {"rules"}
    assert [a["alert"]["metadata"]["offences"] for a in alerts] == [["1"], ["2"], ["3"]]
    assert banned == "rules" and cut_off


# -- a rule file of our own, and SIGHUP -------------------------------------------------------
def rules_file(victim: Victim) -> Path:
    return victim.workdir / "local" / "test.rules"


def blocked_and_passed(lab: Lab, src: str, blocked: str, passed: str) -> tuple[bool, bool]:
    base = f"http://{lab.victim4}"
    return (not answered(lab, "attacker", base + blocked, "--interface", src, timeout=2),
            answered(lab, "attacker", base + passed, "--interface", src))


def test_a_rule_file_from_the_config_blocks_its_request_and_sighup_swaps_it(
        lab: Lab, victim: Victim) -> None:
    """The file named in rules.files blocks /blockme (a benign URI passes);
    edited to block /newblock instead and SIGHUP: the new rule applies, the
    old one no longer; then a broken file and SIGHUP: rejected, the last
    good rules stay in force."""
    assert answered(lab, "client", f"http://{lab.victim4}/search?q=benign")
    with attacker_sources(lab, 54, 55, 56) as (first, second, third):
        assert blocked_and_passed(lab, first, "/blockme", "/search?q=blockm") == (True, True)

        rules_file(victim).write_text(RULE.format(msg="test 2", uri="/newblock", sid=9000002))
        victim.signal("HUP")
        wait_until(lambda: victim.run_log().count("config reloaded") == 1, 10, "reload")
        assert blocked_and_passed(lab, second, "/newblock", "/blockme") == (True, True)

        rules_file(victim).write_text('drop http any any -> any any (msg:"broken"; '
                                      'http.uri; content:"/x"; sid:;)\n')
        victim.signal("HUP")
        wait_until(lambda: "config reload rejected" in victim.run_log(), 10, "rejection")
        assert blocked_and_passed(lab, third, "/newblock", "/blockme") == (True, True)
        sids = [[a["alert"]["signature_id"] for a in alerts_from(victim, ip)]
                for ip in (first, second, third)]
    assert sids == [[9000001], [9000002], [9000002]]
    assert victim.metric("ips_inline_config_reloads_total", result="success") == 1
    assert victim.metric("ips_inline_config_reloads_total", result="failure") == 1
    assert victim.proc is not None and victim.proc.poll() is None
    why = victim.run_log().split("config reload rejected")[1].splitlines()[0]
    assert "test.rules:1: sid needs an integer" in why, why  # file:line: why, one line

