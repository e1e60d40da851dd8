"""The iptables/ip6tables rules that put the IPS inline.

One chain of our own per family, hooked from INPUT by a single jump:

    -i lo ACCEPT                       (live.whitelist_loopback)
    -m addrtype --src-type LOCAL ACCEPT (live.whitelist_local; IPv6 drops spoofed ones first)
    -s <whitelist CIDR> ACCEPT         (engine.whitelist, this family only)
    -m set --match-set <ban set> src DROP   (bans never reach userspace)
    -m set --match-set <net set> src DROP   (CrowdSec Range decisions, when configured)
    <connection_rules()>               (connections blocked or bypassed by the daemon)
    <ct_rules()>                       (conntrack state into the packet mark)
    -j NFQUEUE --queue-num N --queue-bypass (passes traffic while no daemon is bound)

Commands are argv lists run without a shell; `commands_install()` returns them
so tests can assert the exact rules. Everything else in the ruleset is left alone.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence

from ips_inline.config import LiveConfig
from ips_inline.enforce.addr import parse_network
from ips_inline.enforce.ipset import NET_TYPE, EnforceError, IpsetEnforcer, check_set_name
from ips_inline.packet import conntrack as ct

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

TOOLS = {4: "iptables", 6: "ip6tables"}
HOOK = "INPUT"
# xtables chain names: at most 28 characters, and not a built-in target name.
_CHAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}$")
_RESERVED = {"ACCEPT", "DROP", "QUEUE", "RETURN", "INPUT", "OUTPUT", "FORWARD", "NFQUEUE"}
_MAX_JUMPS = 64  # bound for removing duplicate jumps someone else added


# Classic BPF (xt_bpf) over the IP header: true for a TCP segment without
# payload (IP length == IP header + TCP header). IPv6: only with TCP right
# after the fixed header (extension headers: no match, the segment is queued).
NO_PAYLOAD = {
    4: "14,48 0 0 0,84 0 0 15,100 0 0 2,7 0 0 0,80 0 0 12,84 0 0 240,116 0 0 2,12 0 0 0,"
       "7 0 0 0,40 0 0 2,28 0 0 0,21 0 1 0,6 0 0 1,6 0 0 0",
    6: "11,48 0 0 6,21 0 8 6,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,28 0 0 0,"
       "21 0 1 0,6 0 0 1,6 0 0 0",
}


def _bit(mark: int) -> str:
    return f"{mark:#x}/{mark:#x}"


class RuleError(EnforceError):
    """An iptables command failed; the message is one line."""


def run_argv(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run one command: argv list, no shell, never raises on a non-zero exit."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as exc:  # tool missing or not executable
        raise RuleError(f"{argv[0]}: cannot run: {exc.strerror}") from None


_ND_TYPES = ("router-solicitation", "router-advertisement", "neighbour-solicitation",
             "neighbour-advertisement")


class RuleSet:
    """Install, inspect and remove the IPS chain in iptables and ip6tables."""

    def __init__(
        self,
        live: LiveConfig,
        whitelist: Iterable[str] = (),
        run: Runner = run_argv,
        sets: Callable[[], IpsetEnforcer] | None = None,
        net_sets: tuple[str, str] | None = None,
        nets: Callable[[], IpsetEnforcer] | None = None,
    ) -> None:
        self.live = live
        self.chain = _check_chain(live.chain)
        self.ban_sets = {4: check_set_name(live.set_v4), 6: check_set_name(live.set_v6)}
        # hash:net sets of CrowdSec Range decisions (v4, v6), dropped beside the ban sets.
        self.net_sets = ({4: check_set_name(net_sets[0]), 6: check_set_name(net_sets[1])}
                         if net_sets else {})
        self.whitelist = _split_whitelist(whitelist)
        self._run = run
        self._sets = sets or (lambda: IpsetEnforcer(live.set_v4, live.set_v6, live.maxelem))
        self._nets = nets or (lambda: IpsetEnforcer(*net_sets, live.maxelem, stype=NET_TYPE))

    # -- pure: the commands ------------------------------------------------------

    def connection_rules(self, fam: int) -> list[list[str]]:
        """Per-connection decisions the daemon left in the connmark, just
        before the queue (after the ban drop, so a banned source's bypassed
        connections are dropped too): blocked connections dropped, bypassed
        ones accepted, and of connections whose data-less segments bypass,
        those segments (a classic BPF program checks that the segment
        carries no payload; data segments stay queued). A packet the daemon
        sends back (NF_REPEAT) with one of the bits saves it to the connmark
        and gets its verdict here."""
        live = self.live
        block, bypass, acks = live.block_mark, live.bypass_mark, live.ack_bypass_mark
        conn = block | bypass | acks
        if not conn:
            return []
        specs = []
        if block:
            specs.append(["-m", "connmark", "--mark", _bit(block), "-j", "DROP"])
        if bypass:
            specs.append(["-m", "connmark", "--mark", _bit(bypass), "-j", "ACCEPT"])
        if acks:
            specs.append(["-p", "tcp", "-m", "connmark", "--mark", _bit(acks), "-m", "bpf",
                          "--bytecode", NO_PAYLOAD[fam], "-j", "ACCEPT"])
        specs.append(["-m", "mark", "!", "--mark", f"0/{conn:#x}", "-j", "CONNMARK",
                      "--save-mark", "--nfmask", f"{conn:#x}", "--ctmask", f"{conn:#x}"])
        if block:
            specs.append(["-m", "mark", "--mark", _bit(block), "-j", "DROP"])
        if bypass | acks:
            specs.append(["-m", "mark", "!", "--mark", f"0/{bypass | acks:#x}", "-j", "ACCEPT"])
        return specs

    def ct_rules(self, fam: int) -> list[list[str]]:
        """The kernel's conntrack state of each queued packet, written into
        the live.ct_mark bits for the engine (packet/conntrack.py). UDP and
        ICMP replies to the host's own traffic (its resolver's answers...)
        skip the queue entirely when live.skip_udp_replies: the engine never
        counts them, and TCP stays queued for payload inspection."""
        field = self.live.ct_mark
        shift = (field & -field).bit_length() - 1

        def mark(state: int) -> list[str]:
            return ["-j", "MARK", "--set-xmark", f"{state << shift:#x}/{field:#x}"]

        specs: list[list[str]] = []
        if self.live.skip_udp_replies:
            icmp = "icmp" if fam == 4 else "ipv6-icmp"
            specs += [["-p", proto, "-m", "conntrack", "--ctstate", "ESTABLISHED", "--ctdir",
                       "REPLY", "-j", "ACCEPT"] for proto in ("udp", icmp)]
        est = ["-m", "conntrack", "--ctstate", "ESTABLISHED"]
        return specs + [
            ["-m", "conntrack", "--ctstate", "INVALID", *mark(ct.INVALID)],
            ["-m", "conntrack", "--ctstate", "NEW", *mark(ct.NEW)],
            [*est, "--ctdir", "REPLY", *mark(ct.REPLY)],
            [*est, "--ctdir", "ORIGINAL", "--ctstatus", "ASSURED", *mark(ct.ASSURED)],
            [*est, "--ctdir", "ORIGINAL", "!", "--ctstatus", "ASSURED", *mark(ct.EST)],
            ["-m", "conntrack", "--ctstate", "RELATED", *mark(ct.RELATED)],
            ["-m", "conntrack", "--ctstate", "UNTRACKED", *mark(ct.UNTRACKED)],
        ]

    def rule_specs(self, fam: int) -> list[list[str]]:
        """The chain's rules in order, as arguments after `-A <chain>`."""
        specs: list[list[str]] = []
        if self.live.whitelist_loopback:
            specs.append(["-i", "lo", "-j", "ACCEPT"])
        if self.live.whitelist_local:
            # The host's own addresses. IPv4 drops packets arriving from outside
            # with a local source (martians) before INPUT; IPv6 does not, so a
            # spoofed own source would skip inspection: drop it here. Multicast
            # the host sends is looped back on its egress device: keep it.
            if fam == 6:
                specs.append(["!", "-i", "lo", "-m", "addrtype", "--src-type", "LOCAL",
                              "!", "--dst-type", "MULTICAST", "-j", "DROP"])
            specs.append(["-m", "addrtype", "--src-type", "LOCAL", "-j", "ACCEPT"])
        if fam == 6:  # neighbour discovery must never wait on userspace
            specs += [["-p", "ipv6-icmp", "--icmpv6-type", t, "-j", "ACCEPT"] for t in _ND_TYPES]
        specs += [["-s", cidr, "-j", "ACCEPT"] for cidr in self.whitelist[fam]]
        specs.append(["-m", "set", "--match-set", self.ban_sets[fam], "src", "-j", "DROP"])
        if self.net_sets:
            specs.append(self._net_drop(fam))
        specs += self.connection_rules(fam)
        specs += self.ct_rules(fam)
        specs.append(["-j", "NFQUEUE", *self._queue_args(), "--queue-bypass"])
        return specs

    def _all_sets(self) -> tuple[Callable[[], IpsetEnforcer], ...]:
        return (self._sets, self._nets) if self.net_sets else (self._sets,)

    def _net_drop(self, fam: int) -> list[str]:
        return ["-m", "set", "--match-set", self.net_sets[fam], "src", "-j", "DROP"]

    def _queue_args(self) -> list[str]:
        """One queue, or one per worker: --queue-balance hashes the address
        pair, so a source always reaches the same worker."""
        first, n = self.live.queue_num, self.live.workers
        if n == 1:
            return ["--queue-num", str(first)]
        return ["--queue-balance", f"{first}:{first + n - 1}"]

    def commands_fill(self, fam: int) -> list[list[str]]:
        """Flush our chain, then append every rule (the chain is ours alone)."""
        tool = TOOLS[fam]
        fill = [[tool, "-w", "-F", self.chain]]
        return fill + [[tool, "-w", "-A", self.chain, *spec] for spec in self.rule_specs(fam)]

    def command_jump(self, fam: int, op: str) -> list[str]:
        """The INPUT jump with op -C (check), -I (insert at the top) or -D (delete)."""
        return [TOOLS[fam], "-w", op, HOOK, "-j", self.chain]

    def commands_install(self) -> list[list[str]]:
        """Everything install() may run, in order, for iptables then ip6tables.

        install() skips the `-N` when the chain exists and the `-I` when `-C`
        finds the jump already there.
        """
        out: list[list[str]] = []
        for fam, tool in TOOLS.items():
            out.append([tool, "-w", "-N", self.chain])
            out += self.commands_fill(fam)
            out.append(self.command_jump(fam, "-I"))
        return out

    def commands_uninstall(self) -> list[list[str]]:
        """What uninstall() runs when everything is installed (each step only if needed)."""
        out: list[list[str]] = []
        for fam, tool in TOOLS.items():
            out.append(self.command_jump(fam, "-D"))
            out += [[tool, "-w", "-F", self.chain], [tool, "-w", "-X", self.chain]]
        return out

    # -- effects -------------------------------------------------------------------

    def install(self) -> None:
        """Sets, chain, rules and jump; running it again changes nothing."""
        for make in self._all_sets():
            with make() as sets:
                sets.ensure_sets()  # the DROP rule cannot reference a missing set
        for fam, tool in TOOLS.items():
            if not self._chain_exists(fam):
                self._check([tool, "-w", "-N", self.chain])
            for argv in self.commands_fill(fam):
                self._check(argv)
            if not self._jump_present(fam):
                self._check(self.command_jump(fam, "-I"))

    def uninstall(self, destroy_sets: bool = False) -> None:
        """Remove the jump and our chain; bans stay in the kernel unless destroy_sets."""
        for fam, tool in TOOLS.items():
            self._remove_jumps(fam)
            if self._chain_exists(fam):
                self._check([tool, "-w", "-F", self.chain])
                self._check([tool, "-w", "-X", self.chain])
        if destroy_sets:
            for make in self._all_sets():
                with make() as sets:
                    sets.destroy_sets()  # only now: a set referenced by a rule is busy

    def installed(self) -> bool:
        """True when the INPUT jump is present in both iptables and ip6tables
        (and the net sets' DROP rules, if configured)."""
        return all(self._jump_present(fam) and self._net_drop_present(fam) for fam in TOOLS)

    def outdated(self) -> list[str]:
        """The rules of this version missing from the chain (an older or edited
        chain), as `tool rule` strings; [] when every one is there. Without
        the conntrack rules the engine would see no kernel state at all."""
        missing = []
        for fam, tool in TOOLS.items():
            for spec in self.rule_specs(fam):
                if self._run([tool, "-w", "-C", self.chain, *spec]).returncode != 0:
                    missing.append(f"{tool} {' '.join(spec)}")
        return missing

    def _net_drop_present(self, fam: int) -> bool:
        if not self.net_sets:
            return True
        return self._run([TOOLS[fam], "-w", "-C", self.chain, *self._net_drop(fam)]
                         ).returncode == 0

    # -- internals -----------------------------------------------------------------

    def _check(self, argv: Sequence[str]) -> None:
        done = self._run(argv)
        if done.returncode != 0:
            raise RuleError(_failure(argv, done))

    def _chain_exists(self, fam: int) -> bool:
        argv = [TOOLS[fam], "-w", "-S", self.chain]
        done = self._run(argv)
        if done.returncode in (0, 1):  # 1: no such chain
            return done.returncode == 0
        raise RuleError(_failure(argv, done))

    def _jump_present(self, fam: int) -> bool:
        if not self._chain_exists(fam):
            return False  # -C would fail with "chain does not exist" (exit 2)
        argv = self.command_jump(fam, "-C")
        done = self._run(argv)
        if done.returncode in (0, 1):  # 1: rule absent
            return done.returncode == 0
        raise RuleError(_failure(argv, done))

    def _remove_jumps(self, fam: int) -> None:
        # Our chain cannot be deleted while any INPUT rule jumps to it.
        for _ in range(_MAX_JUMPS):
            if not self._jump_present(fam):
                return
            self._check(self.command_jump(fam, "-D"))
        raise RuleError(f"{TOOLS[fam]}: more than {_MAX_JUMPS} INPUT jumps to {self.chain}")


def _check_chain(name: str) -> str:
    if not isinstance(name, str) or not _CHAIN_NAME.match(name) or name.upper() in _RESERVED:
        raise RuleError(f"invalid chain name: {name!r}")
    return name


def _split_whitelist(cidrs: Iterable[str]) -> dict[int, list[str]]:
    """Canonical CIDRs by family, duplicates dropped, order kept."""
    out: dict[int, list[str]] = {4: [], 6: []}
    for text in cidrs:
        try:
            net = ipaddress.ip_network(parse_network(text))
        except ValueError:
            raise RuleError(f"invalid whitelist CIDR: {text!r}") from None
        if str(net) not in out[net.version]:
            out[net.version].append(str(net))
    return out


def _failure(argv: Sequence[str], done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or "").strip().splitlines()
    reason = lines[0] if lines else "no error output"
    return f"{' '.join(argv)} failed (exit {done.returncode}): {reason}"
