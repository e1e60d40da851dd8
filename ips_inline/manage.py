"""Management commands that work on the running system directly (kernel sets
and the ban store), not through the daemon: install-rules, uninstall-rules,
ban, unban, bans. The daemon notices store changes within a second."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from .config import Config
from .crowdsec import net_sets, queue_manual_ban, queue_unban
from .crowdsec.state import SECTION, origin_of, pulled, ranges
from .enforce import addr
from .enforce.ipset import NET_TYPE, IpsetEnforcer, SetMissing, clamp_timeout
from .enforce.iptables import RuleSet
from .enforce.store import BanStore
from .errors import UserError


def parse_ip(text: str) -> str:
    try:
        return addr.parse_ip(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _rules(cfg: Config) -> RuleSet:
    return RuleSet(cfg.live, cfg.engine.whitelist, net_sets=net_sets(cfg))


def _ipset(cfg: Config) -> IpsetEnforcer:
    return IpsetEnforcer(cfg.live.set_v4, cfg.live.set_v6, cfg.live.maxelem)


def install_rules(cfg: Config) -> int:
    _rules(cfg).install()
    print(f"rules installed: chain {cfg.live.chain} -> NFQUEUE {cfg.live.queue_num} (bypass)")
    return 0


def uninstall_rules(cfg: Config, destroy_sets: bool) -> int:
    _rules(cfg).uninstall(destroy_sets=destroy_sets)
    print("rules removed" + (" and ban sets destroyed" if destroy_sets else "; bans kept"))
    return 0


def ban(cfg: Config, text: str, duration: int | None) -> int:
    ip = parse_ip(text)
    seconds = clamp_timeout(duration or cfg.bans.base_duration)
    store = BanStore(cfg.live.state_path)
    with _ipset(cfg) as sets:
        sets.add(ip, seconds)
    count = store.load().get(ip, {}).get("count", 0) + 1
    store.record_ban(ip, time.time() + seconds, "manual", count)
    pushed = queue_manual_ban(cfg, store, ip, seconds, count)
    print(f"banned {ip} for {seconds}s" + (" (queued for CrowdSec LAPI)" if pushed else ""))
    return 0


def unban(cfg: Config, text: str) -> int:
    ip = parse_ip(text)
    store = BanStore(cfg.live.state_path)
    entry = store.load().get(ip, {})
    with _ipset(cfg) as sets:
        in_kernel = sets.delete(ip)
    in_store = store.remove(ip)
    in_lapi = queue_unban(cfg, store, ip)
    if not (in_kernel or in_store or in_lapi):
        print(f"{ip} was not banned")
        return 1
    print(f"unbanned {ip}" + (" (the daemon deletes the decision it pushed to CrowdSec)"
                              if in_lapi else ""))
    if pulled(entry) and entry["expires"] > time.time():
        print(f"note: the ban came from CrowdSec ({origin_of(entry)}); delete it there too "
              f"(cscli decisions delete --ip {ip}) or it returns at the next full pull")
    return 0


def list_bans(cfg: Config, as_json: bool) -> int:
    now = time.time()
    with _ipset(cfg) as sets:
        kernel = sets.entries()
    store = BanStore(cfg.live.state_path)
    stored = store.load()
    rows = []
    for ip, remaining in sorted(kernel.items()):
        entry = stored.get(ip, {})
        rows.append({"ip": ip, "expires": _when(now + remaining),
                     "detector": entry.get("detector", "kernel"),
                     "count": entry.get("count", 1), "origin": origin_of(entry)})
    rows += _range_rows(cfg, store, now)
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['ip']:<40} {row['expires']}  {row['detector']:<15} #{row['count']:<4} "
                  f"{row['origin']}")
        print(f"{len(rows)} active ban(s)")
    return 0


def _range_rows(cfg: Config, store: BanStore, now: float) -> list[dict]:
    """CrowdSec Range decisions in the hash:net sets, when they are pulled."""
    names = net_sets(cfg)
    if names is None:
        return []
    try:
        with IpsetEnforcer(*names, cfg.live.maxelem, stype=NET_TYPE) as sets:
            kernel = sets.entries()
    except SetMissing:  # rules not installed since [crowdsec] was configured
        return []
    known = ranges(store.load_section(SECTION))
    return [{"ip": cidr, "expires": _when(now + remaining),
             "detector": known.get(cidr, {}).get("scenario", "kernel"), "count": 1,
             "origin": known.get(cidr, {}).get("origin", "crowdsec:unknown")}
            for cidr, remaining in sorted(kernel.items())]


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
