"""`ips-inline run`: the inline daemon.

NFQUEUE -> engine (wall clock) -> verdict, on the main thread; bans go to the
enforcer's worker thread; metrics are served from prometheus-client's thread.
Signals: SIGTERM/SIGINT stop, SIGHUP reloads the config (a bad one is
rejected and the old one kept). On exit the queue is unbound, so traffic
bypasses (rule has --queue-bypass) and bans stay in the kernel.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable
from typing import IO

from prometheus_client import CollectorRegistry

from . import heap
from .bans import BanManager, Whitelist
from .config import Config, ConfigError, load
from .crowdsec import Link, net_sets
from .crowdsec.state import pulled
from .detectors import load_rules
from .enforce.ipset import EnforceError, IpsetEnforcer
from .enforce.iptables import RuleError, RuleSet
from .enforce.live import BanFailures, LiveEnforcer
from .enforce.store import BanStore, StoreError
from .engine import Engine
from .errors import DaemonError, UserError
from .eve import AlertBudget, InterfaceNames, JsonLines
from .latency import LatencyHistogram
from .metrics import DaemonMetrics, IpsCollector, MetricsError, serve, snapshot
from .signals import handle_signals
from .sources.nfqueue import WAIT_MAX, Current, Marks, QueueError, QueueSource, make_callback
from .warm import Warmer

log = logging.getLogger("ips_inline")
CAP_NET_ADMIN = 12
TICK = 1.0  # seconds between housekeeping rounds
PRUNE_EVERY = 3600.0
EVE_ALERTS_PER_SECOND = 200  # alert records written a second at most; the rest counted


def has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def raw_ip(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def open_eve(path: str) -> IO[str]:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the daemon
    except OSError as exc:
        raise DaemonError(f"cannot open EVE log {path}: {exc.strerror}") from None


class Daemon:
    """One engine on one queue. As a worker (workers.py) it gets its own
    queue number and reports snapshots instead of serving metrics."""

    def __init__(self, cfg: Config, cfg_path: str | None, queue_num: int | None = None,
                 report: Callable[[dict], None] | None = None) -> None:
        self.cfg = cfg
        self.report = report
        self.cfg_path = cfg_path
        self.stop = False
        self.reload = False
        self.reloads = {"success": 0, "failure": 0}
        self.latency = LatencyHistogram()
        self.failures = BanFailures()
        self.store = BanStore(cfg.live.state_path)
        self.eve = open_eve(cfg.live.eve_path)
        live = cfg.live
        self.enforcer = LiveEnforcer(IpsetEnforcer(live.set_v4, live.set_v6, live.maxelem),
                                     self.store, self.failures)
        self.bans = BanManager(cfg.bans, Whitelist(cfg.engine.whitelist), self.enforcer)
        self.sink = AlertBudget(JsonLines(self.eve), EVE_ALERTS_PER_SECOND)
        # CrowdSec: a lone daemon talks to LAPI itself; a worker only queues its bans.
        self.crowdsec = Link(cfg, self.store, agent=report is None, tap=True)
        self.engine = Engine(cfg, self.bans, self.crowdsec.sink(self.sink))
        self.queue_num = live.queue_num if queue_num is None else queue_num
        self.source = QueueSource(self.queue_num, live.queue_maxlen, live.fail_open,
                                  live.sock_rcvbuf,
                                  wait_max=min(WAIT_MAX, live.warm_interval or WAIT_MAX))
        self.warmer = Warmer(cfg, self.engine.ruleset) if live.warm_interval else None
        self._store_mtime = 0.0
        self._next_prune = 0.0
        self.metrics_server = None

    def start_metrics(self) -> None:
        if not self.cfg.metrics.enabled or self.report is not None:
            return
        registry = CollectorRegistry()
        registry.register(IpsCollector(lambda: [self.engine], DaemonMetrics(
            latency=self.latency, ban_failures=self.failures, reloads=self.reloads,
            bans_active=lambda: self.enforcer.active_count, queues=(self.queue_num,),
            extra=self.crowdsec.families)))
        try:
            self.metrics_server = serve(self.cfg.metrics, registry)
        except MetricsError as exc:
            raise DaemonError(str(exc)) from None
        log.info("metrics on http://%s:%d/metrics", self.cfg.metrics.listen, self.cfg.metrics.port)

    # -- start-up ---------------------------------------------------------------
    def restore(self, ipset: IpsetEnforcer) -> None:
        """Reconcile the store and the kernel sets at start, without flushing:
        store bans missing from the set are re-added with their remaining
        time; set entries unknown to the store are adopted."""
        now = time.time()
        kernel = ipset.entries()
        entries = self.store.load()
        for ip, entry in entries.items():
            remaining = entry["expires"] - now
            if remaining >= 1 and ip not in kernel:
                ipset.add(ip, int(remaining))
        for ip, remaining in kernel.items():
            entry = entries.get(ip)
            if entry is None or entry["expires"] < now:
                count = entry["count"] if entry else 1
                detector = entry["detector"] if entry else "kernel"
                self.store.record_ban(ip, now + remaining, detector, count)
        for ip, entry in self.store.load().items():
            if not pulled(entry):  # CrowdSec's bans are the kernel's alone (see crowdsec/)
                self.bans.seed(raw_ip(ip), int(entry.get("count", 1)), entry["expires"], now)
        self._store_mtime = self.store.mtime()
        log.info("restored %d bans (%d in the kernel sets)", len(self.bans.active), len(kernel))

    # -- main loop --------------------------------------------------------------
    def run(self) -> int:
        live = self.cfg.live
        marks = Marks(live.bypass_mark, live.ack_bypass_mark, live.block_mark, live.ct_mark)
        current, names = Current(), InterfaceNames()
        self.engine.get_iface = lambda: names.name(current.indev())  # alerts only
        callback = make_callback(self.engine.process, self.latency.observe, marks,
                                 self.source.batch, self.cfg.metrics.latency_sample, current)
        try:
            self.source.bind(callback)
        except QueueError as exc:
            raise DaemonError(str(exc)) from None
        try:
            self.start_metrics()
        except DaemonError:
            self.source.close()
            raise
        self.enforcer.start(first=self.restore)
        self.crowdsec.start()  # after restore: both touch the sets and the state file
        handle_signals(self._on_stop, self._on_hup)
        log.info("ips-inline inline on NFQUEUE %d (%d objects frozen for the collector)",
                 self.queue_num, heap.settle())
        try:
            self._loop()
        finally:
            self.source.close()
            self.crowdsec.stop()
            self.crowdsec.tick(self.enforcer.call)  # the last second's bans into the queue
            self.enforcer.stop()
            self.eve.close()
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
            log.info("stopped: queue unbound, traffic bypasses, bans stay in the kernel")
        return 0

    def _loop(self) -> None:
        """Wait in recv() for packets; housekeeping and warm-up rounds between.
        A signal's handler runs at once; the loop sees its flag when the wait
        ends (WAIT_MAX at most)."""
        next_tick = next_warm = 0.0
        while not self.stop:
            self.source.wait()
            if self.reload:
                self._reload()
            now = time.time()
            if now >= next_tick:
                next_tick = now + TICK
                self._housekeeping(now)
            if self.warmer is not None and now >= next_warm:
                next_warm = now + self.cfg.live.warm_interval
                self.warmer.run()

    def _housekeeping(self, now: float) -> None:
        self.engine.expire(now)  # a full sweep scans every table: only when due
        self.sink.tick()
        self.crowdsec.tick(self.enforcer.call)
        if self.report is not None:
            self._report()
        mtime = self.store.mtime()
        try:
            if mtime != self._store_mtime:  # `ips-inline ban/unban` changed it
                self._store_mtime = mtime
                banned = {raw_ip(ip): e["expires"] for ip, e in self.store.load().items()
                          if e["expires"] > now and not pulled(e)}
                self.bans.sync(banned, now)
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY
                self.store.prune(now, self.cfg.bans.history_ttl)
        except StoreError as exc:
            log.error("%s", exc)

    def _report(self) -> None:
        snap = snapshot(self.engine, self.latency)
        snap["ban_failures"].update(set_full=self.failures.set_full, netlink=self.failures.netlink)
        try:
            self.report(snap)
        except OSError:  # the supervisor is gone: it will stop us too
            self.stop = True

    def _reload(self) -> None:
        self.reload = False
        try:
            cfg = load(self.cfg_path)
        except ConfigError as exc:
            self.reloads["failure"] += 1
            log.error("config reload rejected, keeping the old one: %s", exc)
            return
        if cfg.live != self.cfg.live:
            log.warning("config reload: [live] changes need a restart; applying the rest")
            cfg.live = self.cfg.live
        if cfg.crowdsec != self.cfg.crowdsec:
            log.warning("config reload: [crowdsec] changes need a restart; applying the rest")
            cfg.crowdsec = self.cfg.crowdsec
        try:
            ruleset = load_rules(cfg, self.engine.ruleset)
        except UserError as exc:  # a rule file that does not parse (file:line: why)
            self.reloads["failure"] += 1
            log.error("config reload rejected, keeping the old config and rules: %s", exc)
            return
        self.cfg = cfg
        self.engine.reconfigure(cfg, ruleset)
        if self.warmer is not None:
            self.warmer.reconfigure(cfg, ruleset)
        self.reloads["success"] += 1
        heap.settle()  # the old rules' objects freed, the new ones frozen
        log.info("config reloaded from %s", self.cfg_path or "built-in defaults")

    def _on_stop(self, _sig: int, _frame: object) -> None:
        self.stop = True

    def _on_hup(self, _sig: int, _frame: object) -> None:
        self.reload = True


def preflight(cfg: Config) -> None:
    if not has_net_admin():
        raise DaemonError("needs root or CAP_NET_ADMIN to bind NFQUEUE and manage ipsets")
    try:
        rules = RuleSet(cfg.live, cfg.engine.whitelist, net_sets=net_sets(cfg))
        installed = rules.installed()
        outdated = rules.outdated() if installed else []
    except RuleError as exc:
        raise DaemonError(str(exc)) from None
    if not installed:
        raise DaemonError("rules are not installed: run `ips-inline install-rules` first")
    if outdated:
        raise DaemonError(f"the {cfg.live.chain} chain is not this version's ({len(outdated)} "
                          f"rules missing, e.g. `{outdated[0]}`): run `ips-inline install-rules`")


def run(cfg: Config, cfg_path: str | None) -> int:
    preflight(cfg)
    try:
        if cfg.live.workers > 1:
            from .workers import Supervisor

            return Supervisor(cfg, cfg_path).run()
        return Daemon(cfg, cfg_path).run()
    except (StoreError, EnforceError) as exc:
        raise DaemonError(str(exc)) from None
