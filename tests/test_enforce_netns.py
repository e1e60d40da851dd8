"""Enforcement against the real kernel, each test inside network namespaces it creates.

Nothing runs in the host namespace except `ip netns add/del`: the code under test
is started with `ip netns exec`, so the host's INPUT chain and ipsets stay untouched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ips_inline.enforce.iptables import NO_PAYLOAD

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
SET4, SET6, CHAIN = "ips_inline_ban4", "ips_inline_ban6", "IPS_INLINE"

PRELUDE = """
import json, sys
from ips_inline.config import LiveConfig
from ips_inline.enforce.ipset import EnforceError, IpsetEnforcer, SetFull, SetMissing
from ips_inline.enforce.iptables import RuleSet
LIVE = LiveConfig()
def enforcer(maxelem=65536):
    return IpsetEnforcer(LIVE.set_v4, LIVE.set_v6, maxelem)
def rules():
    return RuleSet(LIVE, ["127.0.0.0/8", "::1/128", "198.51.100.0/24"])
result = None
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "iptables", "ip6tables", "ipset"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def _new_ns(created: list[str]) -> str:
    name = f"ipst-enf-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    created.append(name)
    return name


@pytest.fixture
def make_ns() -> Iterator[Callable[[], str]]:
    """Factory for fresh namespaces, all deleted afterwards, also on failure."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    created: list[str] = []
    try:
        yield lambda: _new_ns(created)
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def ns(make_ns: Callable[[], str]) -> str:
    return make_ns()


def sh(ns: str, *argv: str, check: bool = True) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed: {done.stderr.strip()}")
    return done.stdout


def py(ns: str, body: str) -> object:
    """Run PRELUDE + body in the namespace; body sets `result` (JSON-able)."""
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"in-namespace code failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ruleset(ns: str) -> str:
    """iptables-save and ip6tables-save of the namespace, minus comments and counters."""
    text = sh(ns, "iptables-save") + sh(ns, "ip6tables-save")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return re.sub(r"\[\d+:\d+\]", "[0:0]", "\n".join(lines))


def members(ns: str, name: str) -> dict[str, int]:
    """`ipset list` members of one set: ip -> timeout."""
    out = sh(ns, "ipset", "list", name).split("Members:\n", 1)[1]
    pairs = (line.split() for line in out.splitlines() if line.strip())
    return {p[0]: int(p[2]) for p in pairs}


def preexisting_rules(ns: str) -> None:
    """Someone else's rules, which install/uninstall must leave exactly as they are."""
    for tool in ("iptables", "ip6tables"):
        sh(ns, tool, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        sh(ns, tool, "-N", "ADMIN")
        sh(ns, tool, "-A", "ADMIN", "-j", "RETURN")
        sh(ns, tool, "-A", "INPUT", "-j", "ADMIN")
    sh(ns, "ipset", "create", "other", "hash:net")


# -- rules -------------------------------------------------------------------------


ND_TYPES = ("133", "134", "135", "136")
def connection_and_ct_rules(fam: int) -> list[str]:
    """What iptables -S prints for the connection (block, bypass) and conntrack rules."""
    icmp = "icmp" if fam == 4 else "ipv6-icmp"
    est = "-m conntrack --ctstate ESTABLISHED"
    return [
        f"-A {CHAIN} -m connmark --mark 0x10000000/0x10000000 -j DROP",
        f"-A {CHAIN} -m connmark --mark 0x40000000/0x40000000 -j ACCEPT",
        f'-A {CHAIN} -p tcp -m connmark --mark 0x20000000/0x20000000 -m bpf --bytecode '
        f'"{NO_PAYLOAD[fam]}" -j ACCEPT',
        f"-A {CHAIN} -m mark ! --mark 0x0/0x70000000 -j CONNMARK --save-mark"
        " --nfmask 0x70000000 --ctmask 0x70000000",
        f"-A {CHAIN} -m mark --mark 0x10000000/0x10000000 -j DROP",
        f"-A {CHAIN} -m mark ! --mark 0x0/0x60000000 -j ACCEPT",
        f"-A {CHAIN} -p udp {est} --ctdir REPLY -j ACCEPT",
        f"-A {CHAIN} -p {icmp} {est} --ctdir REPLY -j ACCEPT",
        f"-A {CHAIN} -m conntrack --ctstate INVALID -j MARK --set-xmark 0x6000000/0x7000000",
        f"-A {CHAIN} -m conntrack --ctstate NEW -j MARK --set-xmark 0x1000000/0x7000000",
        f"-A {CHAIN} {est} --ctdir REPLY -j MARK --set-xmark 0x4000000/0x7000000",
        f"-A {CHAIN} {est} --ctstatus ASSURED --ctdir ORIGINAL -j MARK"
        " --set-xmark 0x3000000/0x7000000",
        f"-A {CHAIN} {est} ! --ctstatus ASSURED --ctdir ORIGINAL -j MARK"
        " --set-xmark 0x2000000/0x7000000",
        f"-A {CHAIN} -m conntrack --ctstate RELATED -j MARK --set-xmark 0x5000000/0x7000000",
        f"-A {CHAIN} -m conntrack --ctstate UNTRACKED -j MARK --set-xmark 0x7000000/0x7000000",
    ]


def test_install_twice_equals_once_and_uninstall_restores(ns: str) -> None:
    preexisting_rules(ns)
    before = ruleset(ns)
    assert py(ns, "result = rules().installed()") is False

    py(ns, "rules().install()")
    once = ruleset(ns)
    py(ns, "rules().install()")
    assert ruleset(ns) == once
    assert py(ns, "result = rules().installed()") is True

    assert sh(ns, "iptables", "-S", CHAIN).splitlines() == [
        f"-N {CHAIN}",
        f"-A {CHAIN} -i lo -j ACCEPT",
        f"-A {CHAIN} -m addrtype --src-type LOCAL -j ACCEPT",
        f"-A {CHAIN} -s 127.0.0.0/8 -j ACCEPT",
        f"-A {CHAIN} -s 198.51.100.0/24 -j ACCEPT",
        f"-A {CHAIN} -m set --match-set {SET4} src -j DROP",
        *connection_and_ct_rules(4),
        f"-A {CHAIN} -j NFQUEUE --queue-num 0 --queue-bypass",
    ]
    assert sh(ns, "ip6tables", "-S", CHAIN).splitlines() == [
        f"-N {CHAIN}",
        f"-A {CHAIN} -i lo -j ACCEPT",
        f"-A {CHAIN} ! -i lo -m addrtype --src-type LOCAL ! --dst-type MULTICAST -j DROP",
        f"-A {CHAIN} -m addrtype --src-type LOCAL -j ACCEPT",
        *[f"-A {CHAIN} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT" for t in ND_TYPES],
        f"-A {CHAIN} -s ::1/128 -j ACCEPT",
        f"-A {CHAIN} -m set --match-set {SET6} src -j DROP",
        *connection_and_ct_rules(6),
        f"-A {CHAIN} -j NFQUEUE --queue-num 0 --queue-bypass",
    ]
    for tool in ("iptables", "ip6tables"):  # one jump, first in INPUT
        hooks = [ln for ln in sh(ns, tool, "-S", "INPUT").splitlines() if ln.startswith("-A")]
        assert hooks[0] == f"-A INPUT -j {CHAIN}"
        assert hooks.count(f"-A INPUT -j {CHAIN}") == 1

    py(ns, "e = enforcer(); e.add('192.0.2.1', 600); e.close()")
    py(ns, "rules().uninstall()")
    assert ruleset(ns) == before
    py(ns, "rules().uninstall()")  # second run: no-op, no error
    assert ruleset(ns) == before
    assert "192.0.2.1" in members(ns, SET4)  # bans stay in the kernel by default

    py(ns, "rules().uninstall(destroy_sets=True)")
    assert sh(ns, "ipset", "list", "-n").split() == ["other"]
    assert ruleset(ns) == before


def test_traffic_bypasses_queue_without_daemon_and_bans_drop(
    make_ns: Callable[[], str],
) -> None:
    ips, client = make_ns(), make_ns()
    veth = ["type", "veth", "peer", "ipst-s", "netns", ips]
    subprocess.run(["ip", "link", "add", "ipst-c", "netns", client, *veth], check=True)
    ends = [(ips, "ipst-s", "10.99.0.1/24", "fd99::1/64")]
    ends.append((client, "ipst-c", "10.99.0.2/24", "fd99::2/64"))
    for ns_, dev, v4, v6 in ends:
        sh(ns_, "ip", "addr", "add", v4, "dev", dev)
        sh(ns_, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        sh(ns_, "ip", "link", "set", dev, "up")
    py(ips, "rules().install()")

    def ping(dst: str) -> bool:
        argv = ["ip", "netns", "exec", client, "ping", "-c", "1", "-W", "1", dst]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    assert ping("10.99.0.1") and ping("fd99::1")  # --queue-bypass: no daemon, traffic flows
    py(ips, "e = enforcer(); e.add('10.99.0.2', 60); e.add('fd99::2', 60); e.close()")
    assert not ping("10.99.0.1") and not ping("fd99::1")
    py(ips, "e = enforcer(); e.delete('10.99.0.2'); e.delete('fd99::2'); e.close()")
    assert ping("10.99.0.1") and ping("fd99::1")


# -- bans --------------------------------------------------------------------------


def test_add_shows_timeout_readd_replaces_delete(ns: str) -> None:
    got = py(
        ns,
        """
        e = enforcer(); e.ensure_sets(); e.ensure_sets()
        e.add("192.0.2.7", 300)
        first = e.entries()
        e.add("192.0.2.7", 1000)
        longer = e.entries()["192.0.2.7"]
        e.add("192.0.2.7", 50)  # replaces, does not keep the larger
        shorter = e.entries()["192.0.2.7"]
        e.add("192.0.2.8", 0)  # clamped to 1 s, never "forever"
        result = [first, longer, shorter, e.count()]
        """,
    )
    first, longer, shorter, count = got  # type: ignore[misc]
    assert set(first) == {"192.0.2.7"} and 298 <= first["192.0.2.7"] <= 300
    assert 998 <= longer <= 1000
    assert 48 <= shorter <= 50
    assert count == 2
    listed = members(ns, SET4)
    assert 48 <= listed["192.0.2.7"] <= 50  # `ipset list` shows the per-entry timeout
    assert "timeout 0" in sh(ns, "ipset", "list", SET4)  # set created with timeout support

    assert py(ns, "e = enforcer(); result = [e.delete('192.0.2.7'), e.delete('192.0.2.7')]") == [
        True,
        False,
    ]
    assert "192.0.2.7" not in members(ns, SET4)


def test_v6_goes_to_v6_set(ns: str) -> None:
    got = py(
        ns,
        """
        e = enforcer(); e.ensure_sets()
        e.add("2001:DB8:0::5", 120)
        e.add("::ffff:192.0.2.9", 120)
        result = e.entries()
        """,
    )
    assert set(got) == {"2001:db8::5", "192.0.2.9"}  # type: ignore[arg-type]
    assert set(members(ns, SET6)) == {"2001:db8::5"}
    assert set(members(ns, SET4)) == {"192.0.2.9"}
    assert "family inet6" in sh(ns, "ipset", "list", SET6)


def test_full_set_raises_set_full(ns: str) -> None:
    got = py(
        ns,
        """
        e = enforcer(maxelem=2); e.ensure_sets()
        e.add("192.0.2.1", 100); e.add("192.0.2.2", 100)
        try:
            e.add("192.0.2.3", 100)
            result = "no error"
        except SetFull as exc:
            result = [str(exc)]
        e.add("192.0.2.1", 200)  # updating an entry of a full set still works
        result.append(sorted(e.entries()))
        """,
    )
    assert got == [
        f"ipset add {SET4}: set is full (maxelem reached)",
        ["192.0.2.1", "192.0.2.2"],
    ]
    assert "maxelem 2" in sh(ns, "ipset", "list", SET4)


def test_missing_sets_and_existing_sets(ns: str) -> None:
    got = py(
        ns,
        """
        e = enforcer()
        result = [e.sets_exist()]
        for call in (lambda: e.add("192.0.2.1", 5), e.entries, e.count):
            try:
                call()
            except SetMissing as exc:
                result.append(str(exc))
        e.destroy_sets()  # absent: fine
        """,
    )
    assert got == [
        False,
        f"ipset add {SET4}: set does not exist",
        f"ipset list {SET4}: set does not exist",
        f"ipset header {SET4}: set does not exist",
    ]
    # An existing compatible set is kept as it is, entries included.
    sh(ns, "ipset", "create", SET4, "hash:ip", "timeout", "0", "maxelem", "10")
    sh(ns, "ipset", "add", SET4, "192.0.2.4", "timeout", "100")
    assert py(ns, "e = enforcer(); e.ensure_sets(); result = e.sets_exist()") is True
    assert "maxelem 10" in sh(ns, "ipset", "list", SET4)
    assert "192.0.2.4" in members(ns, SET4)
    # An existing set of another shape is an error, not silently used.
    sh(ns, "ipset", "destroy", SET6)
    sh(ns, "ipset", "create", SET6, "hash:net", "family", "inet6")
    err = py(
        ns,
        """
        try:
            enforcer().ensure_sets()
        except EnforceError as exc:
            result = [type(exc).__name__, str(exc)]
        """,
    )
    assert err == [
        "EnforceError",
        f"existing ipset {SET6} is not hash:ip family inet6 with timeout support; "
        "destroy or rename it",
    ]


def test_enforcer_is_bound_to_one_thread(ns: str) -> None:
    got = py(
        ns,
        """
        import threading
        e = enforcer(); e.ensure_sets()
        out = []
        def worker():
            try:
                e.add("192.0.2.1", 10)
            except EnforceError as exc:
                out.append(str(exc))
        t = threading.Thread(target=worker); t.start(); t.join()
        e.close()
        t = threading.Thread(target=lambda: (e.add("192.0.2.2", 10), out.append(e.count())))
        t.start(); t.join()  # after close(), another thread may take it over
        result = out
        """,
    )
    assert got == ["IpsetEnforcer used from a second thread; make one per thread", 1]
