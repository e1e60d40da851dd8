"""Suricata 7 in NFQ IPS mode: the peer the drain rows are compared with.

Run as a user would run it instead of ips-inline: `suricata -c YAML -S RULES
-q 0 --runmode workers` with `nfq: mode: accept` (accepted packets go on to
the rest of INPUT), one worker thread, whole process pinned to the core the
other consumers are pinned to. Everything (YAML, rules, logs, EVE, pid file)
lives in a work dir the bench removes. The YAML is written here, not taken
from /etc/suricata/suricata.yaml (that one loads the ET ruleset paths):
  - max-pending-packets 16384: the queue's max length is 4x that (65536, the
    kernel's ceiling here) and the netlink buffer 1500 bytes per slot, so the
    drain backlog fits;
  - HTTP the only app-layer parser (ips-inline parses nothing else), request
    bodies inspected up to 16 KiB (ips-inline's engine.http_max_body);
  - stream.async-oneside: INPUT sees the client's half of each connection
    only (the SYN-ACK goes out through OUTPUT), as ips-inline does;
  - EVE with alerts only (ips-inline writes its alerts too), no stats, no
    unix socket, no other outputs; detect profile medium.

The ruleset (rules(), 30 rules) is the work of ips-inline's detectors in
Suricata's rule language, every rule `drop` as ips-inline blocks:
  - ICMP echo and SYN rates per source (threshold by_src), at the thresholds
    the ips-inline config of the same row has (raised on the clean mixes);
  - NULL, FIN and Xmas flags (FIN and Xmas packets of no connection are
    dropped by Suricata's stream engine before the rules: stream_midstream);
  - on the normalized URI, the request body and the cookies (what ips-inline
    decodes and inspects): three SQL injection pcres with no content
    prefilter (every request is scanned, as libinjection reads every
    non-trivial value), XSS tags/handlers and script schemes, path traversal,
    sensitive files and command injection (content + pcre where a literal
    exists), the patterns of ips-inline's own regexes;
  - shellshock on the request headers.
Port scans (distinct ports per source) have no rule keyword and are left out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlab import BenchError, BenchLab
from consumers import Consumer

MAX_PENDING = 16384
START_TIMEOUT = 60.0  # rules compile in well under a second; a loaded machine is slow
READY = "Engine started"
VERDICTS = re.compile(r"Verdict: Accepted (\d+), Dropped (\d+)")


@dataclass(frozen=True)
class Thresholds:
    """Per-source rates (packets per second) at which the rate rules fire."""

    icmp: int
    syn: int


# Header rules: ips-inline's rate and flag detectors. {icmp} and {syn}: Thresholds.
HEADER_RULES = (
    'icmp any any -> $HOME_NET any (msg:"ICMP echo flood"; itype:8; '
    "threshold:type both, track by_src, count {icmp}, seconds 1; classtype:attempted-dos;",
    'tcp any any -> $HOME_NET any (msg:"SYN flood"; flags:S,CE; '
    "threshold:type both, track by_src, count {syn}, seconds 1; classtype:attempted-dos;",
    'tcp any any -> $HOME_NET any (msg:"NULL scan"; flags:0; classtype:attempted-recon;',
    'tcp any any -> $HOME_NET any (msg:"FIN scan"; flags:F,CE; classtype:attempted-recon;',
    'tcp any any -> $HOME_NET any (msg:"Xmas scan"; flags:FPU,CE; classtype:attempted-recon;',
)
_COMMANDS = ("cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?|perl|php"
             "|ruby|ping|rm|chmod|chown|echo|nslookup|sleep|telnet|busybox|powershell|cmd")
# Payload rules: (name, content prefilter or None, pcre), each on every BUFFERS entry.
# In a rule's pcre `;` is written `\;` (the rule syntax needs it; PCRE reads a literal).
PAYLOAD_RULES = (
    ("SQLi tautology", None,
     r"['\x22`]\s*(or|and|\|\||&&)\s+['\x22`]?\w*['\x22`]?\s*(=|<|>|like\b)"),
    ("SQLi UNION SELECT", None, r"\bunion(\s+|\/\*.*?\*\/)+(all\s+|distinct\s+)?select\b"),
    ("SQLi comment or stacked query", None,
     r"['\x22`)]\s*(--|#|\/\*)|\;\s*(select|insert|update|delete|drop|exec|declare|shutdown)\b"
     r"|\b(sleep|benchmark|pg_sleep)\s*\("),
    ("XSS tag or handler", "<", r"<\s*(script|iframe|svg|object|embed)\b|<[^>]*\son[a-z]+\s*="),
    ("XSS script scheme", "script", r"(java|vb)script\s*:"),
    ("Path traversal", "..", r"(^|[\/\\=])\.\.([\/\\]|$)"),
    ("Sensitive file", None,
     r"\/etc\/(passwd|shadow|hosts|group)\b|\b(boot|win)\.ini\b|\/proc\/self\/"),
    ("Command injection", None,
     r"(\;|\|\|?|&&|`|\$\()\s*(\/(usr\/)?s?bin\/)?(" + _COMMANDS + r")\b"),
)
# What ips-inline inspects of a request that these buffers hold: path and query
# (normalized: percent-decoded), the body, the cookies.
BUFFERS = (("URI", "http.uri"), ("body", "http.request_body"), ("cookie", "http.cookie"))
SHELLSHOCK = ('http any any -> $HOME_NET any (msg:"Shellshock in request headers"; '
              r'flow:to_server; http.header; content:"()"; pcre:"/\(\)\s*\{[^}]*\}\s*\;/"; '
              "classtype:web-application-attack;")
SID_BASE = 1000001

YAML = """%YAML 1.1
---
# Written by scripts/bench/suricata.py for one drain row; removed with its dir.
vars:
  address-groups:
    HOME_NET: "any"
    EXTERNAL_NET: "any"
  port-groups:
    HTTP_PORTS: "80"
default-rule-path: {dir}
rule-files: []
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
threshold-file: {dir}/threshold.config
default-log-dir: {dir}
max-pending-packets: {pending}
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
    - file:
        enabled: yes
        level: info
        filename: {dir}/suricata.log
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert
stats:
  enabled: no
unix-command:
  enabled: no
nfq:
  mode: accept
  fail-open: no
app-layer:
  protocols:
{protocols}
stream:
  async-oneside: true
detect:
  profile: medium
threading:
  set-cpu-affinity: yes
  cpu-affinity:
    - management-cpu-set:
        cpu: [ {cpu} ]
    - worker-cpu-set:
        cpu: [ {cpu} ]
        mode: exclusive
        threads: 1
"""

# Suricata 7.0's app-layer parsers other than HTTP, all turned off.
OTHER_PROTOCOLS = ("bittorrent-dht", "dcerpc", "dhcp", "dnp3", "dns", "enip", "ftp", "http2",
                   "ike", "imap", "krb5", "modbus", "mqtt", "nfs", "ntp", "pgsql", "quic",
                   "rdp", "rfb", "sip", "smb", "smtp", "snmp", "ssh", "telnet", "tftp", "tls")
HTTP_CONFIG = """    http:
      enabled: yes
      libhtp:
        default-config:
          personality: IDS
          request-body-limit: 16kb
          response-body-limit: 16kb
"""


def binary() -> str | None:
    return shutil.which("suricata")


def version() -> str:
    """'7.0.10', from `suricata -V`."""
    path = binary()
    if path is None:
        raise BenchError("suricata not installed (apt-get install -t bookworm-backports suricata)")
    out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=30,
                         check=False).stdout
    words = out.split()
    return words[words.index("version") + 1] if "version" in words else "?"


def rules(t: Thresholds) -> str:
    """The ruleset, one `drop` rule a line, sids from SID_BASE."""
    bodies = [r.format(icmp=t.icmp, syn=t.syn) for r in HEADER_RULES]
    for where, buffer in BUFFERS:
        for name, content, pcre in PAYLOAD_RULES:
            prefilter = f'content:"{content}"; nocase; ' if content else ""
            bodies.append(f'http any any -> $HOME_NET any (msg:"{name} in {where}"; '
                          f'flow:to_server; {buffer}; {prefilter}pcre:"/{pcre}/i"; '
                          "classtype:web-application-attack;")
    bodies.append(SHELLSHOCK)
    return "# ips-inline's detectors as Suricata rules (scripts/bench/suricata.py)\n" + "".join(
        f"drop {body} sid:{SID_BASE + i}; rev:1;)\n" for i, body in enumerate(bodies))


def yaml(workdir: Path, cpu: int, pending: int = MAX_PENDING) -> str:
    protocols = HTTP_CONFIG + "".join(f"    {name}:\n      enabled: no\n"
                                      for name in OTHER_PROTOCOLS)
    return YAML.format(dir=workdir, cpu=cpu, pending=pending, protocols=protocols.rstrip("\n"))


@dataclass(frozen=True)
class Outcome:
    accepted: int
    dropped: int
    alerts: Counter[str]

    def __str__(self) -> str:
        total = self.accepted + self.dropped
        share = f"dropped {self.dropped / total:.0%}" if total else "no verdict count"
        return f"{share}, {sum(self.alerts.values()):,} alerts"


@dataclass
class Suricata:
    """One Suricata in the victim on queue 0, with its own work dir."""

    lab: BenchLab
    workdir: Path
    thresholds: Thresholds
    cpu: int
    proc: subprocess.Popen[Any] | None = None

    def start(self) -> Consumer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg, rule_file = self.workdir / "suricata.yaml", self.workdir / "bench.rules"
        cfg.write_text(yaml(self.workdir, self.cpu))
        rule_file.write_text(rules(self.thresholds))
        (self.workdir / "threshold.config").write_text("")
        console = self.workdir / "console.log"
        with open(console, "wb") as out:
            self.proc = self.lab.popen("victim", [
                "taskset", "-c", str(self.cpu), binary() or "suricata", "-c", cfg, "-S",
                rule_file, "-q", "0", "--runmode", "workers", "-l", self.workdir,
                "--pidfile", self.workdir / "suricata.pid"], stdout=out, stderr=out)
        self._wait_ready(console)
        self.lab.wait_bound((0,), self.proc)
        return Consumer("Suricata", self.proc, (0,))

    def _wait_ready(self, console: Path) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while READY not in console.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise BenchError(f"suricata exited {self.proc.returncode}: {self.tail(console)}")
            if time.monotonic() > deadline:
                raise BenchError(f"suricata not started after {START_TIMEOUT:.0f}s: "
                                 f"{self.tail(console)}")
            time.sleep(0.05)

    @staticmethod
    def tail(path: Path) -> str:
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(lines[-2:]) or "(no output)"

    def outcome(self) -> Outcome:
        """What this Suricata did, read once it stopped: its NFQ verdict
        counts (printed at exit) and its EVE alerts."""
        accepted = dropped = 0
        for line in (self.workdir / "console.log").read_text(errors="replace").splitlines():
            found = VERDICTS.search(line)
            if found:
                accepted, dropped = int(found[1]), int(found[2])
        alerts: Counter[str] = Counter()
        path = self.workdir / "eve.json"
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # not one of ours
            if event.get("event_type") == "alert":
                alerts[event["alert"].get("signature", "?")] += 1
        return Outcome(accepted, dropped, alerts)

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.kill(self.proc, timeout=10)
            self.proc = None
