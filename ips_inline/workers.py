"""`live.workers > 1`: one worker process per queue, one engine each.

The rule spreads packets with `--queue-balance Q:Q+N-1`, which hashes on the
address pair, so one source always lands on one worker and its per-source
state stays consistent. Workers share bans through the kernel ipset and the
state file; each sends a snapshot of its figures to this supervisor once a
second, and the supervisor serves their sum on the one metrics endpoint. It
validates a config once on SIGHUP before passing the signal on, restarts a
worker that dies (its queue bypasses meanwhile), and stops them all on exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import select
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from prometheus_client import CollectorRegistry

from .config import Config, ConfigError, load
from .crowdsec import Link
from .enforce.ipset import EnforceError, IpsetEnforcer
from .enforce.store import BanStore
from .errors import DaemonError
from .metrics import DaemonMetrics, IpsCollector, MetricsError, serve
from .signals import SignalWake, catch_signals

log = logging.getLogger("ips_inline")
RESTART_DELAY = 1.0  # seconds before a dead worker is started again
COUNT_EVERY = 5.0  # seconds between reads of the ban set size


def worker_main(cfg: Config, cfg_path: str | None, index: int, conn: Connection) -> None:
    """A worker process: the ordinary daemon on queue_num + index, reporting
    its figures to the supervisor instead of serving metrics."""
    from .daemon import Daemon  # the daemon module imports this one

    try:
        Daemon(cfg, cfg_path, queue_num=cfg.live.queue_num + index,
               report=lambda snap: conn.send_bytes(json.dumps(snap).encode())).run()
    except DaemonError as exc:
        log.error("worker %d: %s", index, exc)
        raise SystemExit(2) from None


class Supervisor:
    def __init__(self, cfg: Config, cfg_path: str | None) -> None:
        self.cfg = cfg
        self.cfg_path = cfg_path
        self.n = cfg.live.workers
        self.ctx = multiprocessing.get_context("fork")  # before any thread exists
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Connection] = {}
        self.latest: dict[int, dict] = {}
        self.restart_at: dict[int, float] = {}
        self.reloads = {"success": 0, "failure": 0}
        self.bans_active: int | None = None
        self.stop = False
        self.reload = False
        # The one LAPI puller and pusher; workers queue their bans in the state file.
        self.crowdsec = Link(cfg, BanStore(cfg.live.state_path), agent=True, tap=False)

    def run(self) -> int:
        for i in range(self.n):
            self._spawn(i)
        server = self._serve_metrics()
        self.crowdsec.start()  # a thread: only after the first forks
        wake = catch_signals(self._on_stop, self._on_hup)
        log.info("supervising %d workers on NFQUEUE %d..%d", self.n, self.cfg.live.queue_num,
                 self.cfg.live.queue_num + self.n - 1)
        try:
            self._loop(wake)
        finally:
            self.crowdsec.stop()
            self._stop_all()
            wake.close()
            if server is not None:
                server.shutdown()
                server.server_close()
        return 0

    def _spawn(self, i: int) -> None:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=worker_main, name=f"ips-inline-worker-{i}",
                                args=(self.cfg, self.cfg_path, i, child), daemon=False)
        proc.start()
        child.close()
        self.procs[i], self.conns[i] = proc, parent
        self.restart_at.pop(i, None)

    def _serve_metrics(self):
        if not self.cfg.metrics.enabled:
            return None
        queues = tuple(range(self.cfg.live.queue_num, self.cfg.live.queue_num + self.n))
        registry = CollectorRegistry()
        registry.register(IpsCollector.from_snapshots(
            lambda: list(self.latest.values()),
            DaemonMetrics(reloads=self.reloads, bans_active=lambda: self.bans_active,
                          queues=queues, extra=self.crowdsec.families)))
        try:
            return serve(self.cfg.metrics, registry)
        except MetricsError as exc:
            self._stop_all()
            raise DaemonError(str(exc)) from None

    def _loop(self, wake: SignalWake) -> None:
        live = self.cfg.live
        with IpsetEnforcer(live.set_v4, live.set_v6, live.maxelem) as sets:
            next_count = 0.0
            while not self.stop:
                waits = [wake, *self.conns.values(), *(p.sentinel for p in self.procs.values())]
                ready = select.select(waits, [], [], 1.0)[0]
                if wake in ready:
                    wake.clear()
                self._receive(ready)
                self._reap(ready)
                if self.reload:
                    self._reload()
                now = time.monotonic()
                self._restart_due(now)
                if now >= next_count:
                    next_count = now + COUNT_EVERY
                    self._count(sets)

    def _receive(self, ready: list) -> None:
        for i, conn in list(self.conns.items()):
            if conn in ready:
                with contextlib.suppress(EOFError, OSError, ValueError):  # dying: _reap sees it
                    self.latest[i] = json.loads(conn.recv_bytes())

    def _reap(self, ready: list) -> None:
        for i, proc in list(self.procs.items()):
            if proc.sentinel in ready and not proc.is_alive() and not self.stop:
                log.error("worker %d exited (status %s); restarting it in %.0fs",
                          i, proc.exitcode, RESTART_DELAY)
                self.conns.pop(i).close()
                del self.procs[i]
                self.restart_at[i] = time.monotonic() + RESTART_DELAY

    def _restart_due(self, now: float) -> None:
        for i, when in list(self.restart_at.items()):
            if now >= when and not self.stop:
                self._spawn(i)

    def _count(self, sets: IpsetEnforcer) -> None:
        try:
            self.bans_active = sets.count()
        except EnforceError:
            self.bans_active = None

    def _reload(self) -> None:
        """Check the new config here once, so a bad one is rejected (and
        counted) once; only a good one reaches the workers."""
        self.reload = False
        try:
            load(self.cfg_path)
        except ConfigError as exc:
            self.reloads["failure"] += 1
            log.error("config reload rejected, keeping the old one: %s", exc)
            return
        self.reloads["success"] += 1
        for proc in self.procs.values():
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    def _stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs.values():
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        log.info("workers stopped: queues unbound, traffic bypasses, bans stay in the kernel")

    def _on_stop(self, _sig: int, _frame: object) -> None:
        self.stop = True

    def _on_hup(self, _sig: int, _frame: object) -> None:
        self.reload = True
