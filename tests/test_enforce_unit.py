"""Enforcement layer without root: address parsing, timeouts, exact iptables argv."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from ips_inline.config import IPSET_MAX_TIMEOUT, LiveConfig
from ips_inline.enforce.addr import family, parse_ip
from ips_inline.enforce.ipset import (
    EnforceError,
    InvalidAddress,
    IpsetEnforcer,
    clamp_timeout,
)
from ips_inline.enforce.iptables import NO_PAYLOAD, RuleError, RuleSet

HOSTILE = [
    "fe80::1%eth0;x",
    "fe80::1%eth0",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4\n",
    "1.2.3.4; touch x",
    "$(id)",
    "`id`",
    "-F",
    "--flush",
    "10.0.0.0/8",
    "1.2.3.4/32",
    "::/0",
    "",
    "01.2.3.4",
    "1.2.3",
    "1.2.3.256",
    "2001:db8::1::2",
    "localhost",
    "1.2.3.4\x00",
    "x" * 5000,
]


# -- addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "fam"),
    [
        ("192.0.2.1", "192.0.2.1", 4),
        ("0.0.0.0", "0.0.0.0", 4),
        ("2001:DB8:0:0::1", "2001:db8::1", 6),
        ("::1", "::1", 6),
        ("fe80:0000::0001", "fe80::1", 6),
        ("::ffff:192.0.2.1", "192.0.2.1", 4),  # v4-mapped: the kernel sees a v4 peer
    ],
)
def test_parse_ip_canonical(text: str, canonical: str, fam: int) -> None:
    assert parse_ip(text) == canonical
    assert family(text) == fam


@pytest.mark.parametrize("text", HOSTILE)
def test_parse_ip_rejects_hostile(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ip(text)
    message = str(info.value)
    assert message.startswith("invalid IP address: '")
    assert "\n" not in message and len(message) < 120


@pytest.mark.parametrize("value", [16909060, b"1.2.3.4", None, ["1.2.3.4"]])
def test_parse_ip_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="invalid IP address"):
        parse_ip(value)  # type: ignore[arg-type]


def test_family_rejects_like_parse_ip() -> None:
    with pytest.raises(ValueError, match="invalid IP address"):
        family("1.2.3.4; touch x")


# -- ipset enforcer, no kernel needed ----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0, 1),
        (-5, 1),
        (0.4, 1),
        (1, 1),
        (299.9, 299),
        (300, 300),
        (IPSET_MAX_TIMEOUT, IPSET_MAX_TIMEOUT),
        (IPSET_MAX_TIMEOUT + 1, IPSET_MAX_TIMEOUT),
        (10**12, IPSET_MAX_TIMEOUT),
        (float("inf"), IPSET_MAX_TIMEOUT),
    ],
)
def test_clamp_timeout(given: float, expected: int) -> None:
    assert clamp_timeout(given) == expected


@pytest.mark.parametrize("text", HOSTILE)
def test_enforcer_rejects_hostile_before_any_netlink(text: str) -> None:
    enf = IpsetEnforcer("b4", "b6")
    for call in (lambda: enf.add(text, 10), lambda: enf.delete(text)):
        with pytest.raises(InvalidAddress, match="invalid IP address"):
            call()
    assert enf._nl is None  # parse_ip ran first: no socket was opened


@pytest.mark.parametrize(
    ("v4", "v6", "maxelem"),
    [
        ("-F", "b6", 10),
        ("b4", "b 6", 10),
        ("x" * 32, "b6", 10),
        ("same", "same", 10),
        ("b4", "b6", 0),
        ("b4;id", "b6", 10),
    ],
)
def test_enforcer_rejects_bad_config(v4: str, v6: str, maxelem: int) -> None:
    with pytest.raises(EnforceError):
        IpsetEnforcer(v4, v6, maxelem)


# -- iptables argv -------------------------------------------------------------------


def v4(*args: str) -> list[str]:
    return ["iptables", "-w", *args]


def v6(*args: str) -> list[str]:
    return ["ip6tables", "-w", *args]


def test_commands_install_default_config() -> None:
    rules = RuleSet(LiveConfig(), ["127.0.0.0/8", "::1/128"])
    chain = "IPS_INLINE"
    queue = ["-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]
    local = ["-m", "addrtype", "--src-type", "LOCAL", "-j", "ACCEPT"]
    def connection(fam: int) -> list[list[str]]:
        return [["-m", "connmark", "--mark", "0x10000000/0x10000000", "-j", "DROP"],
                ["-m", "connmark", "--mark", "0x40000000/0x40000000", "-j", "ACCEPT"],
                ["-p", "tcp", "-m", "connmark", "--mark", "0x20000000/0x20000000", "-m", "bpf",
                 "--bytecode", NO_PAYLOAD[fam], "-j", "ACCEPT"],
                ["-m", "mark", "!", "--mark", "0/0x70000000", "-j", "CONNMARK", "--save-mark",
                 "--nfmask", "0x70000000", "--ctmask", "0x70000000"],
                ["-m", "mark", "--mark", "0x10000000/0x10000000", "-j", "DROP"],
                ["-m", "mark", "!", "--mark", "0/0x60000000", "-j", "ACCEPT"]]

    def ct(icmp: str) -> list[list[str]]:
        est = ["-m", "conntrack", "--ctstate", "ESTABLISHED"]
        return [["-p", "udp", *est, "--ctdir", "REPLY", "-j", "ACCEPT"],
                ["-p", icmp, *est, "--ctdir", "REPLY", "-j", "ACCEPT"],
                ["-m", "conntrack", "--ctstate", "INVALID", "-j", "MARK", "--set-xmark",
                 "0x6000000/0x7000000"],
                ["-m", "conntrack", "--ctstate", "NEW", "-j", "MARK", "--set-xmark",
                 "0x1000000/0x7000000"],
                [*est, "--ctdir", "REPLY", "-j", "MARK", "--set-xmark", "0x4000000/0x7000000"],
                [*est, "--ctdir", "ORIGINAL", "--ctstatus", "ASSURED", "-j", "MARK",
                 "--set-xmark", "0x3000000/0x7000000"],
                [*est, "--ctdir", "ORIGINAL", "!", "--ctstatus", "ASSURED", "-j", "MARK",
                 "--set-xmark", "0x2000000/0x7000000"],
                ["-m", "conntrack", "--ctstate", "RELATED", "-j", "MARK", "--set-xmark",
                 "0x5000000/0x7000000"],
                ["-m", "conntrack", "--ctstate", "UNTRACKED", "-j", "MARK", "--set-xmark",
                 "0x7000000/0x7000000"]]

    nd = ["router-solicitation", "router-advertisement", "neighbour-solicitation",
          "neighbour-advertisement"]
    assert rules.commands_install() == [
        v4("-N", chain),
        v4("-F", chain),
        v4("-A", chain, "-i", "lo", "-j", "ACCEPT"),
        v4("-A", chain, *local),
        v4("-A", chain, "-s", "127.0.0.0/8", "-j", "ACCEPT"),
        v4("-A", chain, "-m", "set", "--match-set", "ips_inline_ban4", "src", "-j", "DROP"),
        *[v4("-A", chain, *rule) for rule in connection(4) + ct("icmp")],
        v4("-A", chain, *queue),
        v4("-I", "INPUT", "-j", chain),
        v6("-N", chain),
        v6("-F", chain),
        v6("-A", chain, "-i", "lo", "-j", "ACCEPT"),
        v6("-A", chain, "!", "-i", "lo", "-m", "addrtype", "--src-type", "LOCAL",
           "!", "--dst-type", "MULTICAST", "-j", "DROP"),  # IPv6 has no martian filter
        v6("-A", chain, *local),
        *[v6("-A", chain, "-p", "ipv6-icmp", "--icmpv6-type", t, "-j", "ACCEPT") for t in nd],
        v6("-A", chain, "-s", "::1/128", "-j", "ACCEPT"),
        v6("-A", chain, "-m", "set", "--match-set", "ips_inline_ban6", "src", "-j", "DROP"),
        *[v6("-A", chain, *rule) for rule in connection(6) + ct("ipv6-icmp")],
        v6("-A", chain, *queue),
        v6("-I", "INPUT", "-j", chain),
    ]


def test_commands_custom_config_and_whitelist_canonicalised() -> None:
    live = LiveConfig(queue_num=7, chain="IPSX", set_v4="s4", set_v6="s6", whitelist_loopback=False,
                      whitelist_local=False, bypass_mark=0, ack_bypass_mark=0, block_mark=0,
                      ct_mark=0x70, skip_udp_replies=False)
    ct = ["-m", "conntrack", "--ctstate"]
    est = [*ct, "ESTABLISHED"]
    marks = [[*ct, "INVALID", "-j", "MARK", "--set-xmark", "0x60/0x70"],
             [*ct, "NEW", "-j", "MARK", "--set-xmark", "0x10/0x70"],
             [*est, "--ctdir", "REPLY", "-j", "MARK", "--set-xmark", "0x40/0x70"],
             [*est, "--ctdir", "ORIGINAL", "--ctstatus", "ASSURED", "-j", "MARK", "--set-xmark",
              "0x30/0x70"],
             [*est, "--ctdir", "ORIGINAL", "!", "--ctstatus", "ASSURED", "-j", "MARK",
              "--set-xmark", "0x20/0x70"],
             [*ct, "RELATED", "-j", "MARK", "--set-xmark", "0x50/0x70"],
             [*ct, "UNTRACKED", "-j", "MARK", "--set-xmark", "0x70/0x70"]]
    rules = RuleSet(live, ["10.1.2.3/8", "10.0.0.0/8", "2001:DB8::/32", "192.0.2.1"])
    assert rules.commands_fill(4) == [
        v4("-F", "IPSX"),
        v4("-A", "IPSX", "-s", "10.0.0.0/8", "-j", "ACCEPT"),  # host bits dropped, deduplicated
        v4("-A", "IPSX", "-s", "192.0.2.1/32", "-j", "ACCEPT"),
        v4("-A", "IPSX", "-m", "set", "--match-set", "s4", "src", "-j", "DROP"),
        *[v4("-A", "IPSX", *rule) for rule in marks],
        v4("-A", "IPSX", "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"),
    ]
    nd = ["router-solicitation", "router-advertisement", "neighbour-solicitation",
          "neighbour-advertisement"]
    assert rules.commands_fill(6) == [
        v6("-F", "IPSX"),
        *[v6("-A", "IPSX", "-p", "ipv6-icmp", "--icmpv6-type", t, "-j", "ACCEPT") for t in nd],
        v6("-A", "IPSX", "-s", "2001:db8::/32", "-j", "ACCEPT"),
        v6("-A", "IPSX", "-m", "set", "--match-set", "s6", "src", "-j", "DROP"),
        *[v6("-A", "IPSX", *rule) for rule in marks],
        v6("-A", "IPSX", "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"),
    ]


def test_commands_uninstall() -> None:
    assert RuleSet(LiveConfig()).commands_uninstall() == [
        v4("-D", "INPUT", "-j", "IPS_INLINE"),
        v4("-F", "IPS_INLINE"),
        v4("-X", "IPS_INLINE"),
        v6("-D", "INPUT", "-j", "IPS_INLINE"),
        v6("-F", "IPS_INLINE"),
        v6("-X", "IPS_INLINE"),
    ]


def test_bypass_rules_sit_between_ban_drop_and_nfqueue() -> None:
    specs = RuleSet(LiveConfig(bypass_mark=0x10, ack_bypass_mark=0, block_mark=0)).rule_specs(4)
    ban = next(i for i, s in enumerate(specs) if "--match-set" in s)
    assert specs[ban + 1] == ["-m", "connmark", "--mark", "0x10/0x10", "-j", "ACCEPT"]
    save = ["CONNMARK", "--save-mark", "--nfmask", "0x10", "--ctmask", "0x10"]
    assert specs[ban + 2][-6:] == save
    assert specs[-1][:2] == ["-j", "NFQUEUE"]
    off = LiveConfig(bypass_mark=0, ack_bypass_mark=0, block_mark=0)
    assert RuleSet(off).connection_rules(4) == []


@pytest.mark.parametrize("chain", ["-F", "INPUT", "accept", "a b", "x;id", "c" * 29, ""])
def test_rejects_bad_chain(chain: str) -> None:
    with pytest.raises(RuleError, match="invalid chain name"):
        RuleSet(LiveConfig(chain=chain))


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "1.2.3.4; id", " 10.0.0.0/8", "-F"])
def test_rejects_bad_whitelist(cidr: str) -> None:
    with pytest.raises(RuleError, match="invalid whitelist CIDR"):
        RuleSet(LiveConfig(), [cidr])


# -- install/uninstall logic against a fake iptables ------------------------------------


class FakeXtables:
    """Just enough iptables to check which commands install/uninstall issue."""

    def __init__(self) -> None:
        self.chains: dict[str, dict[str, list[list[str]]]] = {
            t: {"INPUT": []} for t in ("iptables", "ip6tables")
        }
        self.calls: list[list[str]] = []
        self.fail_on: str | None = None

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        tool, op, chain, spec = argv[0], argv[2], argv[3], argv[4:]
        chains = self.chains[tool]
        rc, err = 0, ""
        if op == self.fail_on:
            rc, err = 4, "iptables: Resource problem.\nmore detail\n"
        elif op == "-S":
            rc = 0 if chain in chains else 1
        elif op in ("-N", "-F"):
            chains[chain] = []
        elif op == "-X":
            del chains[chain]
        elif op == "-A":
            chains[chain].append(spec)
        elif op == "-I":
            chains[chain].insert(0, spec)
        elif op == "-C":
            rc = 0 if spec in chains[chain] else 1
        elif op == "-D":
            chains[chain].remove(spec)
        return subprocess.CompletedProcess(argv, rc, "", err)

    def ops(self) -> list[str]:
        return [c[2] for c in self.calls]


class FakeSets:
    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self) -> FakeSets:
        return self

    def __enter__(self) -> FakeSets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.append("close")

    def ensure_sets(self) -> None:
        self.log.append("ensure")

    def destroy_sets(self) -> None:
        self.log.append("destroy")


def make(xt: FakeXtables, sets: FakeSets) -> RuleSet:
    return RuleSet(LiveConfig(), ["127.0.0.0/8"], run=xt, sets=sets)  # type: ignore[arg-type]


def test_install_twice_is_install_once() -> None:
    xt, sets = FakeXtables(), FakeSets()
    rules = make(xt, sets)
    assert not rules.installed()
    rules.install()
    once = {t: {c: list(r) for c, r in ch.items()} for t, ch in xt.chains.items()}
    assert "-N" in xt.ops() and "-I" in xt.ops()
    xt.calls.clear()
    rules.install()
    assert xt.chains == once
    assert "-N" not in xt.ops() and "-I" not in xt.ops()
    assert xt.chains["iptables"]["INPUT"] == [["-j", "IPS_INLINE"]]
    assert rules.installed()
    assert sets.log == ["ensure", "close", "ensure", "close"]


def test_uninstall_removes_only_ours_and_is_idempotent() -> None:
    xt, sets = FakeXtables(), FakeSets()
    xt.chains["iptables"]["INPUT"].append(["-p", "tcp", "-j", "ACCEPT"])
    before = {t: {c: list(r) for c, r in ch.items()} for t, ch in xt.chains.items()}
    rules = make(xt, sets)
    rules.install()
    rules.uninstall()
    assert xt.chains == before
    xt.calls.clear()
    rules.uninstall()
    assert set(xt.ops()) == {"-S"}  # only looked
    assert sets.log == ["ensure", "close"]  # bans stay by default
    rules.uninstall(destroy_sets=True)
    assert sets.log[-2:] == ["destroy", "close"]


def test_uninstall_removes_duplicate_jumps() -> None:
    xt, sets = FakeXtables(), FakeSets()
    rules = make(xt, sets)
    rules.install()
    xt.chains["iptables"]["INPUT"].append(["-j", "IPS_INLINE"])
    rules.uninstall()
    assert xt.chains["iptables"] == {"INPUT": []}


def test_failure_is_one_line_rule_error_with_stderr() -> None:
    xt, sets = FakeXtables(), FakeSets()
    xt.fail_on = "-A"
    with pytest.raises(RuleError) as info:
        make(xt, sets).install()
    assert str(info.value) == (
        "iptables -w -A IPS_INLINE -i lo -j ACCEPT failed (exit 4): iptables: Resource problem."
    )
    assert isinstance(info.value, EnforceError)


def test_missing_tool_is_rule_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuleError, match="iptables: cannot run"):
        RuleSet(LiveConfig(), sets=FakeSets()).installed()  # type: ignore[arg-type]


def test_a_chain_of_an_older_version_is_outdated() -> None:
    """The jump alone is no proof: a chain without the conntrack rules would
    leave the engine without the kernel's state; the daemon refuses it."""
    xt, sets = FakeXtables(), FakeSets()
    rules = make(xt, sets)
    rules.install()
    assert rules.outdated() == []
    mark_new = next(s for s in xt.chains["iptables"]["IPS_INLINE"] if "NEW" in s)
    xt.chains["iptables"]["IPS_INLINE"].remove(mark_new)
    assert rules.outdated() == ["iptables " + " ".join(mark_new)]
