"""Configuration: dataclasses with built-in defaults, loaded from one TOML file.

Every section is a dataclass; an unknown key or a value of the wrong type is a
ConfigError naming the key, so `check-config` and the daemon fail in one line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from .enforce.addr import parse_network
from .rules.vars import DEFAULT_HOME_NET, DEFAULT_HTTP_PORTS, VarError, Variables

DETECTOR_NAMES = (
    "icmp_flood",
    "syn_flood",
    "port_scan",
    "null_scan",
    "fin_scan",
    "xmas_scan",
    "sqli",
    "xss",
    "path_traversal",
    "cmd_injection",
    "rules",
    "brute_force",
)
PAYLOAD_DETECTORS = ("sqli", "xss", "path_traversal", "cmd_injection")
# brute_force's default services: FTP, SSH, telnet, POP3, IMAP, SMTP submission,
# IMAPS, POP3S, MySQL, RDP, PostgreSQL, VNC.
BRUTE_FORCE_PORTS = ["21", "22", "23", "110", "143", "587", "993", "995", "3306", "3389",
                     "5432", "5900"]
IPSET_MAX_TIMEOUT = 2147483  # ipset 7.17 rejects larger per-entry timeouts (measured here)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


@dataclass
class DetectorConfig:
    enabled: bool = True
    mode: str = "block"  # "block" drops; "alert" only logs what it would have done
    threshold: int = 0  # events per window (rates) or distinct items (scans); 0 = n/a
    window: float = 1.0  # seconds
    ban_after: int = 1  # offences within bans.offence_window that escalate to a ban
    half_open_threshold: int = 0  # syn_flood only: half-open connections per source
    # brute_force only: "PORTS[:THRESHOLD[/WINDOW]]" entries, PORTS a port, a range
    # a-b or a comma list; without THRESHOLD/WINDOW the detector's own apply.
    ports: list[str] = field(default_factory=list)


def _detector_defaults() -> dict[str, DetectorConfig]:
    payload = {n: DetectorConfig(ban_after=3) for n in PAYLOAD_DETECTORS}
    return {
        "icmp_flood": DetectorConfig(threshold=50, window=1.0),
        "syn_flood": DetectorConfig(threshold=100, window=1.0, half_open_threshold=64),
        "port_scan": DetectorConfig(threshold=20, window=10.0),
        # Stealth scans: more than 5 distinct ports probed within 5 s (nmap probes
        # hundreds a second; a lone odd FIN after a lost connection is one port).
        "null_scan": DetectorConfig(threshold=5, window=5.0),
        "fin_scan": DetectorConfig(threshold=5, window=5.0),
        "xmas_scan": DetectorConfig(threshold=5, window=5.0),
        **payload,
        # Rules: each hit's action decides (alert logs, drop/reject drop); ban_after
        # counts drop hits on connections whose handshake the kernel proved.
        "rules": DetectorConfig(ban_after=3),
        # New connections per source to one port, handshake proven by the kernel.
        "brute_force": DetectorConfig(threshold=10, window=60.0,
                                      ports=list(BRUTE_FORCE_PORTS)),
    }


@dataclass
class EngineConfig:
    malformed_policy: str = "accept"  # verdict for undecodable packets
    error_policy: str = "accept"  # verdict when a detector raises
    # Verdict for packets shorter than their IP header says (NFQUEUE copies about
    # 4016 bytes): "accept" inspects what was copied, then stops inspecting the stream.
    truncated_policy: str = "accept"
    whitelist: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_sources: int = 65536  # per-source state entries, per table
    max_flows: int = 65536  # tracked TCP connections
    source_ttl: float = 120.0  # idle seconds before per-source state expires
    flow_ttl: float = 300.0  # idle seconds before an established flow expires
    half_open_ttl: float = 30.0  # seconds a SYN waits for its handshake
    http_max_head: int = 16384  # bytes of request head buffered per connection
    http_max_body: int = 16384  # bytes of request body buffered per connection
    alert_interval: float = 1.0  # seconds between repeated alert records per source+detector
    # A connection whose stream is not HTTP is bypassed (no longer queued) after
    # this many packets; 0 = never.
    bypass_after_packets: int = 32
    # Once the kernel proved a connection's handshake, its segments without
    # payload skip the queue (its data segments stay queued and inspected).
    bypass_acks: bool = True
    # A connection whose stream the engine cannot follow (framing it cannot
    # parse, a bound, a desync, a lost or truncated segment): "drop" blocks the
    # connection (fail closed), "accept" stops inspecting it.
    stream_error_policy: str = "drop"
    # Packets the kernel's conntrack finds INVALID (bad flags, out of window,
    # bad checksum): counted by the scan detectors, then dropped or accepted.
    invalid_policy: str = "drop"
    http_max_inspect: int = 4 << 20  # characters of one request fed to detectors, at most
    # The HTTP/2 cleartext preface (h2c): the engine cannot inspect HTTP/2:
    # "drop" fails closed, "accept" lets such connections through uninspected.
    http2_cleartext: str = "drop"


@dataclass
class BanConfig:
    base_duration: int = 300  # seconds for a first ban
    factor: float = 2.0  # each repeat ban of a source lasts this much longer
    max_duration: int = 86400
    offence_window: float = 600.0  # seconds offences count toward the next ban
    history_ttl: float = 604800.0  # seconds a source's past bans count for escalation
    max_per_minute: int = 120  # cap on new bans per minute (ban storms)
    max_tracked: int = 65536  # sources with offence history kept


@dataclass
class LiveConfig:
    queue_num: int = 0
    chain: str = "IPS_INLINE"
    set_v4: str = "ips_inline_ban4"
    set_v6: str = "ips_inline_ban6"
    maxelem: int = 65536
    whitelist_loopback: bool = True  # accept everything arriving on lo before the queue
    whitelist_local: bool = True  # accept the host's own addresses before the queue
    eve_path: str = "/var/log/ips-inline/eve.json"
    state_path: str = "/var/lib/ips-inline/state.json"
    queue_maxlen: int = 4096
    fail_open: bool = True  # a full queue accepts instead of dropping (NFQA_CFG_F_FAIL_OPEN)
    sock_rcvbuf: int = 8 << 20  # netlink socket receive buffer, bytes
    workers: int = 1  # processes on --queue-balance queue_num..queue_num+workers-1
    bypass_mark: int = 0x40000000  # packet/conntrack mark bit of bypassed flows; 0 = no bypass
    ack_bypass_mark: int = 0x20000000  # ... of flows whose data-less segments skip the queue
    block_mark: int = 0x10000000  # ... of blocked flows, dropped by the kernel; 0 = engine only
    ct_mark: int = 0x07000000  # mark bits that carry the conntrack state to the engine
    skip_udp_replies: bool = True  # UDP/ICMP replies to the host's own traffic skip the queue
    warm_interval: float = 0.005  # seconds between warm-up rounds (warm.py); 0 = none


@dataclass
class MetricsConfig:
    enabled: bool = True
    listen: str = "0.0.0.0"
    port: int = 9100
    latency_sample: int = 8  # time one packet in N for the verdict histogram (1 = every one)


@dataclass
class EveConfig:
    # payload_printable of the offending HTTP request on alerts (Suricata's
    # printable form); off keeps request bytes (cookies, credentials) out of the log.
    payload: bool = True
    payload_max: int = 1024  # bytes of the request shown at most


@dataclass
class CrowdsecConfig:
    """CrowdSec's Local API (crowdsec/): pull its decisions as a bouncer, push
    our bans as a watcher. Empty lapi_url = not connected."""

    lapi_url: str = ""  # e.g. "http://10.0.0.5:8080"
    api_key: str = field(default="", repr=False)  # bouncer key: `cscli bouncers add`
    api_key_file: str = ""  # or a file holding it
    machine_id: str = ""  # watcher login: `cscli machines add`; empty = do not push
    password: str = field(default="", repr=False)
    password_file: str = ""
    ca_file: str = ""  # CA bundle for an https lapi_url with a private CA
    poll_interval: float = 10.0  # seconds between decision pulls
    timeout: float = 5.0  # seconds one LAPI request may take in all
    retry_max: float = 60.0  # longest back-off between retries while LAPI fails
    net_set_v4: str = "ips_inline_net4"  # hash:net sets for Range decisions
    net_set_v6: str = "ips_inline_net6"
    max_decisions: int = 65536  # decisions held at most; more are rejected and counted
    max_response_bytes: int = 32 << 20  # a larger LAPI answer is rejected
    push_queue_max: int = 1024  # bans waiting for LAPI; the oldest are dropped (counted)

    @property
    def bouncer(self) -> bool:
        return bool(self.lapi_url and (self.api_key or self.api_key_file))

    @property
    def watcher(self) -> bool:
        return bool(self.lapi_url and self.machine_id)


@dataclass
class RulesConfig:
    """The `rules` detector's rule files and Suricata variables (ips_inline/rules/)."""

    files: list[str] = field(default_factory=list)  # globs, expanded at (re)load
    default: bool = True  # also load the shipped ruleset
    # $HOME_NET: Suricata's default private ranges plus IPv6 ULA. On a server with
    # a public address set it to that address, or $EXTERNAL_NET rules see everyone.
    home_net: list[str] = field(default_factory=lambda: list(DEFAULT_HOME_NET))
    external_net: list[str] = field(default_factory=lambda: ["!$HOME_NET"])
    http_ports: list[str] = field(default_factory=lambda: list(DEFAULT_HTTP_PORTS))
    ssh_ports: list[str] = field(default_factory=lambda: ["22"])
    vars: list[str] = field(default_factory=list)  # more groups, "NAME=VALUE"
    max_tracked: int = 65536  # threshold/detection_filter keys held


@dataclass
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    bans: BanConfig = field(default_factory=BanConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    eve: EveConfig = field(default_factory=EveConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    detectors: dict[str, DetectorConfig] = field(default_factory=_detector_defaults)
    crowdsec: CrowdsecConfig = field(default_factory=CrowdsecConfig)


def load(path: str | Path | None) -> Config:
    """Defaults, overlaid with the TOML file at `path` if one is given."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Config:
    cfg = Config()
    for key, value in raw.items():
        if key == "detectors":
            cfg.detectors = _load_detectors(value)
        elif key in _SECTIONS:
            setattr(cfg, key, _overlay(getattr(cfg, key), value, key))
            if key == "crowdsec":  # a [crowdsec] section that connects nothing is a mistake
                _crowdsec_url(cfg.crowdsec.lapi_url)
        else:
            raise ConfigError(f"unknown config section [{key}]")
    validate(cfg)
    return cfg


_SECTIONS = ("engine", "bans", "live", "metrics", "eve", "crowdsec", "rules")


def _load_detectors(raw: Any) -> dict[str, DetectorConfig]:
    if not isinstance(raw, dict):
        raise ConfigError("[detectors] must be a table")
    out = _detector_defaults()
    for name, section in raw.items():
        if name not in out:
            raise ConfigError(f"unknown detector [detectors.{name}]")
        out[name] = _overlay(out[name], section, f"detectors.{name}")
    return out


def _overlay(obj: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    hints = get_type_hints(type(obj))
    known = {f.name for f in fields(obj)}
    changes = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown config key {where}.{key}")
        changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    return replace(obj, **changes)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:  # list[str], the only other field type
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        type_name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"config key {where} must be {type_name}, got {value!r}")
    return float(value) if hint is float else value


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express."""
    for key in ("malformed_policy", "error_policy", "truncated_policy", "stream_error_policy",
                "invalid_policy", "http2_cleartext"):
        if getattr(cfg.engine, key) not in ("accept", "drop"):
            raise ConfigError(f"config key engine.{key} must be 'accept' or 'drop'")
    for cidr in cfg.engine.whitelist:
        try:
            parse_network(cidr)
        except ValueError:
            raise ConfigError(f"config key engine.whitelist has a bad CIDR {cidr!r}") from None
    _positive(cfg.engine, "engine")
    _positive(cfg.bans, "bans")
    for name, det in cfg.detectors.items():
        if det.mode not in ("block", "alert"):
            raise ConfigError(f"config key detectors.{name}.mode must be 'block' or 'alert'")
        if det.ban_after < 0 or det.threshold < 0 or det.window <= 0:
            raise ConfigError(f"config section detectors.{name} has a negative or zero value")
    if cfg.bans.max_duration > IPSET_MAX_TIMEOUT:
        raise ConfigError(f"config key bans.max_duration exceeds ipset's limit {IPSET_MAX_TIMEOUT}")
    if cfg.engine.bypass_after_packets < 0:
        raise ConfigError("config key engine.bypass_after_packets must be 0 (never) or more")
    _marks(cfg.live)
    if not 1 <= cfg.live.workers <= 64 or cfg.live.queue_num + cfg.live.workers > 65536:
        raise ConfigError("config key live.workers must be 1..64 (queues within 0..65535)")
    if not 0 <= cfg.live.warm_interval <= 1:
        raise ConfigError("config key live.warm_interval must be 0 (off) to 1 second")
    if not 0 <= cfg.live.queue_num <= 65535:
        raise ConfigError("config key live.queue_num must be 0..65535")
    if not 0 < cfg.metrics.port <= 65535:
        raise ConfigError("config key metrics.port must be 1..65535")
    if not 1 <= cfg.metrics.latency_sample <= 65536:
        raise ConfigError("config key metrics.latency_sample must be 1..65536")
    if not 1 <= cfg.eve.payload_max <= 65536:
        raise ConfigError("config key eve.payload_max must be 1..65536 (eve.payload = false: none)")
    _validate_crowdsec(cfg)
    _validate_rules(cfg.rules)
    _validate_brute_force(cfg.detectors["brute_force"])


def _marks(live: LiveConfig) -> None:
    """Mark bits: each within 32 bits, the single-bit ones one bit each, the
    conntrack field three contiguous bits, none overlapping."""
    marks = {"bypass_mark": live.bypass_mark, "ack_bypass_mark": live.ack_bypass_mark,
             "block_mark": live.block_mark}
    for key, value in marks.items():
        if not 0 <= value < 1 << 32 or value & (value - 1):
            raise ConfigError(f"config key live.{key} must be one bit of the 32-bit mark, or 0")
    field = live.ct_mark
    low = field & -field
    if not 0 < field < 1 << 32 or field != low * 7:
        raise ConfigError("config key live.ct_mark must be three adjacent bits of the mark "
                          "(e.g. 0x07000000)")
    used = field
    for key, value in marks.items():
        if value & used:
            raise ConfigError(f"config key live.{key} overlaps another mark")
        used |= value


def _validate_crowdsec(cfg: Config) -> None:
    cs = cfg.crowdsec
    if cs == CrowdsecConfig():
        return
    _crowdsec_url(cs.lapi_url)
    _crowdsec_credentials(cs)
    _positive(cs, "crowdsec")
    where = "config key crowdsec."
    if not 0.1 <= cs.poll_interval <= 3600 or not 0.1 <= cs.timeout <= 300:
        raise ConfigError(f"{where}poll_interval must be 0.1..3600 and timeout 0.1..300 seconds")
    if cs.retry_max < 1:
        raise ConfigError(f"{where}retry_max must be at least 1 second")
    if cs.max_decisions > 1 << 20 or cs.push_queue_max > 65536 or cs.max_response_bytes < 4096:
        raise ConfigError(f"{where}max_decisions must be at most 1048576, push_queue_max at "
                          "most 65536, max_response_bytes at least 4096")
    _crowdsec_sets(cfg)


def _crowdsec_url(text: str) -> None:
    if not text:
        raise ConfigError("config key crowdsec.lapi_url is required in [crowdsec]")
    url = urlsplit(text)
    try:
        _ = url.port  # a port out of range raises here
    except ValueError:
        url = urlsplit("")
    if (url.scheme not in ("http", "https") or not url.hostname or url.username
            or url.password or url.query or url.fragment or len(text) > 256):
        raise ConfigError("config key crowdsec.lapi_url must be http(s)://host[:port][/path], "
                          f"got {text[:80]!r}")


def _crowdsec_credentials(cs: CrowdsecConfig) -> None:
    for key in ("api_key", "password", "machine_id"):
        if not _HEADER_SAFE.match(getattr(cs, key)):  # the value itself stays out of the message
            raise ConfigError(f"config key crowdsec.{key} must be printable ASCII without spaces")
        if key != "machine_id" and getattr(cs, key) and getattr(cs, f"{key}_file"):
            raise ConfigError(f"config keys crowdsec.{key} and {key}_file exclude each other")
    if bool(cs.machine_id) != bool(cs.password or cs.password_file):
        raise ConfigError("config key crowdsec.machine_id needs password or password_file "
                          "(and they need machine_id)")
    if not (cs.bouncer or cs.watcher):
        raise ConfigError("[crowdsec] needs api_key(_file) to pull decisions and/or machine_id "
                          "with password(_file) to push bans")


def _crowdsec_sets(cfg: Config) -> None:
    from .enforce.ipset import EnforceError, check_set_name  # ipset imports this module

    names = (cfg.crowdsec.net_set_v4, cfg.crowdsec.net_set_v6)
    try:
        for name in names:
            check_set_name(name)
    except EnforceError as exc:
        raise ConfigError(f"config key crowdsec.net_set_v4/net_set_v6: {exc}") from None
    if len({*names, cfg.live.set_v4, cfg.live.set_v6}) != 4:
        raise ConfigError("config keys crowdsec.net_set_v4/net_set_v6 must differ from each "
                          "other and from the live.set_v4/set_v6 ban sets")


def _validate_brute_force(det: DetectorConfig) -> None:
    from .detectors.brute_force import parse_ports  # detectors import this module

    try:
        parse_ports(det.ports, det.threshold or 1, det.window)
    except ValueError as exc:
        raise ConfigError(f"config key detectors.brute_force.ports: {exc}") from None


def rule_variables(rules: RulesConfig) -> Variables:
    """The [rules] variables, compiled; VarError names the bad one."""
    return Variables.build(home_net=rules.home_net, external_net=rules.external_net,
                           http_ports=rules.http_ports, ssh_ports=rules.ssh_ports,
                           extra=rules.vars)


_RULE_VAR_KEYS = {"$HOME_NET": "home_net", "$EXTERNAL_NET": "external_net",
                  "$HTTP_PORTS": "http_ports", "$SSH_PORTS": "ssh_ports"}


def _validate_rules(rules: RulesConfig) -> None:
    _positive(rules, "rules")
    for key in _RULE_VAR_KEYS.values():
        if not getattr(rules, key):
            raise ConfigError(f"config key rules.{key} must not be empty")
    try:
        rule_variables(rules)
    except VarError as exc:
        name = str(exc).partition(":")[0]
        key = _RULE_VAR_KEYS.get(name, "vars")
        raise ConfigError(f"config key rules.{key}: {exc}") from None


_ZERO_MEANS_OFF = frozenset(("bypass_after_packets",))
_HEADER_SAFE = re.compile(r"^[!-~]{0,512}$")  # goes into an HTTP header or JSON as is


def _positive(section: Any, where: str) -> None:
    assert is_dataclass(section)
    for f in fields(section):
        if f.name in _ZERO_MEANS_OFF:
            continue
        value = getattr(section, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"config key {where}.{f.name} must be positive, got {value!r}")
