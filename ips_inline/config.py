"""Configuration: dataclasses with built-in defaults, loaded from one TOML file.

Every section is a dataclass; an unknown key or a value of the wrong type is a
ConfigError naming the key, so `check-config` and the daemon fail in one line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

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
)
PAYLOAD_DETECTORS = ("sqli", "xss", "path_traversal", "cmd_injection")
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


def _detector_defaults() -> dict[str, DetectorConfig]:
    payload = {n: DetectorConfig(ban_after=3) for n in PAYLOAD_DETECTORS}
    return {
        "icmp_flood": DetectorConfig(threshold=50, window=1.0),
        "syn_flood": DetectorConfig(threshold=100, window=1.0, half_open_threshold=64),
        "port_scan": DetectorConfig(threshold=20, window=10.0),
        "null_scan": DetectorConfig(),
        "fin_scan": DetectorConfig(),
        "xmas_scan": DetectorConfig(),
        **payload,
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
    # A connection is bypassed (no longer queued) after this many packets once
    # its requests were all complete and clean, or it is not HTTP; 0 = never.
    bypass_after_packets: int = 32


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
    warm_interval: float = 0.005  # seconds between warm-up rounds (warm.py); 0 = none


@dataclass
class MetricsConfig:
    enabled: bool = True
    listen: str = "0.0.0.0"
    port: int = 9100
    latency_sample: int = 8  # time one packet in N for the verdict histogram (1 = every one)


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
    rules: RulesConfig = field(default_factory=RulesConfig)
    detectors: dict[str, DetectorConfig] = field(default_factory=_detector_defaults)


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
        else:
            raise ConfigError(f"unknown config section [{key}]")
    validate(cfg)
    return cfg


_SECTIONS = ("engine", "bans", "live", "metrics", "rules")


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
    for key in ("malformed_policy", "error_policy", "truncated_policy"):
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
    if not 0 <= cfg.live.bypass_mark < 1 << 32:
        raise ConfigError("config key live.bypass_mark must be a 32-bit mark (0 = no bypass)")
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
    _validate_rules(cfg.rules)


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


def _positive(section: Any, where: str) -> None:
    assert is_dataclass(section)
    for f in fields(section):
        if f.name in _ZERO_MEANS_OFF:
            continue
        value = getattr(section, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"config key {where}.{f.name} must be positive, got {value!r}")
