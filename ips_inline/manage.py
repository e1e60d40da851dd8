"""Management commands that work on the running system directly (kernel sets
and the ban store), not through the daemon: install-rules, uninstall-rules,
ban, unban, bans. The daemon notices store changes within a second."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from .config import Config
from .enforce import addr
from .enforce.ipset import IpsetEnforcer, clamp_timeout
from .enforce.iptables import RuleSet
from .enforce.store import BanStore
from .errors import UserError


def parse_ip(text: str) -> str:
    try:
        return addr.parse_ip(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _rules(cfg: Config) -> RuleSet:
    return RuleSet(cfg.live, cfg.engine.whitelist)


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
    print(f"banned {ip} for {seconds}s")
    return 0


def unban(cfg: Config, text: str) -> int:
    ip = parse_ip(text)
    with _ipset(cfg) as sets:
        in_kernel = sets.delete(ip)
    in_store = BanStore(cfg.live.state_path).remove(ip)
    if not (in_kernel or in_store):
        print(f"{ip} was not banned")
        return 1
    print(f"unbanned {ip}")
    return 0


def list_bans(cfg: Config, as_json: bool) -> int:
    now = time.time()
    with _ipset(cfg) as sets:
        kernel = sets.entries()
    stored = BanStore(cfg.live.state_path).load()
    rows = []
    for ip, remaining in sorted(kernel.items()):
        entry = stored.get(ip, {})
        expires = datetime.fromtimestamp(now + remaining, UTC).isoformat(timespec="seconds")
        rows.append({"ip": ip, "expires": expires, "detector": entry.get("detector", "kernel"),
                     "count": entry.get("count", 1)})
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['ip']:<40} {row['expires']}  {row['detector']:<15} #{row['count']}")
        print(f"{len(rows)} active ban(s)")
    return 0
