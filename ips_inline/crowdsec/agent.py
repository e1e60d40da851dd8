"""The one thread that talks to LAPI: pulls decisions every poll_interval
(a watcher alone sends a heartbeat instead), pushes queued bans as soon as
they are queued, and backs off (doubling, up to retry_max) while LAPI fails.
It owns its own netlink sockets (one per ipset kind, see enforce/ipset.py)
and never touches the packet path: the daemon goes on inspecting and banning
whatever LAPI does.

A pull after a rejected answer asks for the full list again (startup=true):
LAPI counts a delta as delivered once it answered, even if we threw it away.
So does one pull every RESYNC seconds: it repairs any drift (a set flushed by
hand) and renews decisions longer than ipset's timeout limit (24.8 days).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from ..config import Config
from ..enforce.ipset import NET_TYPE, EnforceError, IpsetEnforcer
from ..enforce.store import BanStore, StoreError
from .bouncer import Bouncer, KernelSet
from .client import Credentials, LapiClient, LapiError
from .decisions import BadStream, parse_stream
from .watcher import SCENARIOS, Watcher

log = logging.getLogger(__name__)
PULL_RESULTS = ("ok", "unreachable", "server_error", "denied", "refused", "invalid")
PUSH_CHECK = 0.5  # seconds between looks at the push queue in the state file
RESYNC = 6 * 3600.0  # seconds between full pulls
DOWN_LOG_EVERY = 300.0  # seconds between warnings while LAPI keeps failing
FIRST_RETRY = 1.0


class Backoff:
    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self.cap, max(FIRST_RETRY, self.delay * 2))
        return self.delay

    def ok(self) -> None:
        self.delay = 0.0


class Agent:
    def __init__(self, cfg: Config, store: BanStore, creds: Credentials,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 make_sets: Callable[[], tuple[KernelSet, KernelSet]] | None = None) -> None:
        self.cfg = cfg.crowdsec
        self.live = cfg.live
        self.whitelist = list(cfg.engine.whitelist)
        self.store = store
        self.clock, self.monotonic = clock, monotonic
        self.client = LapiClient(self.cfg.lapi_url, creds, self.cfg.timeout,
                                 self.cfg.max_response_bytes, self.cfg.ca_file, SCENARIOS,
                                 clock=monotonic)
        self.watcher = Watcher(store, self.client, clock) if self.cfg.watcher else None
        self.bouncer: Bouncer | None = None  # made in the thread: it owns netlink sockets
        self.pulls: Counter[str] = Counter({r: 0 for r in PULL_RESULTS})
        self.up: int | None = None  # 1 after a good exchange, 0 after a failed one
        self._make_sets = make_sets or self._ipsets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crowdsec", daemon=True)
        self._synced = False
        self._resync_at = 0.0
        self._next_down_log = 0.0  # while LAPI fails: when the next warning is due

    def start(self) -> None:
        self._thread.start()
        log.info("crowdsec: LAPI %s: %s%s", self.cfg.lapi_url,
                 f"pulling decisions every {self.cfg.poll_interval:g}s"
                 if self.cfg.bouncer else "not pulling (no api_key)",
                 f", pushing bans as {self.cfg.machine_id}" if self.watcher else "")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.cfg.timeout * 3 + 5)

    # -- the thread ----------------------------------------------------------------
    def _ipsets(self) -> tuple[IpsetEnforcer, IpsetEnforcer]:
        return (IpsetEnforcer(self.live.set_v4, self.live.set_v6, self.live.maxelem),
                IpsetEnforcer(self.cfg.net_set_v4, self.cfg.net_set_v6, self.live.maxelem,
                              stype=NET_TYPE))

    def _run(self) -> None:
        sets: tuple[KernelSet, ...] = ()
        try:
            if self.cfg.bouncer:
                sets = self._make_sets()
                self.bouncer = Bouncer(self.store, sets[0], sets[1], self.whitelist,
                                       self.cfg.max_decisions, own=self._own, clock=self.clock)
                self._guard(self.bouncer.restore)
            if self.watcher:
                self._guard(self.watcher.load)
            self._loop()
        finally:
            for kernel_set in sets:
                close = getattr(kernel_set, "close", None)
                if close is not None:
                    close()  # in this thread: pyroute2 leaks a socket otherwise
            self.client.close()

    def _own(self, ident: int) -> bool:
        return self.watcher is not None and ident in self.watcher.own

    def _loop(self) -> None:
        pulls, pushes = Backoff(self.cfg.retry_max), Backoff(self.cfg.retry_max)
        next_pull = next_push = self.monotonic()
        mtime = -1.0
        while not self._stop.is_set():
            now = self.monotonic()
            if now >= next_pull and (self.bouncer is not None or self.watcher is not None):
                ok = self._safely(self._pull if self.bouncer is not None else self._heartbeat)
                next_pull = self.monotonic() + (self.cfg.poll_interval if ok else pulls.failed())
                if ok:
                    pulls.ok()
            if self.watcher is not None and now >= next_push:
                current = self.store.mtime()
                if current != mtime or self.watcher.queued:  # new pushes, or some left
                    mtime = current
                    ok = self._safely(self._push)
                    next_push = self.monotonic() + (PUSH_CHECK if ok else pushes.failed())
                    if ok:
                        pushes.ok()
                else:
                    next_push = now + PUSH_CHECK
            due = min(next_pull, next_push if self.watcher is not None else float("inf"))
            self._stop.wait(max(0.05, due - self.monotonic()))

    def _safely(self, step: Callable[[], bool]) -> bool:
        """A bug here must not end the thread: the daemon would go on without
        CrowdSec and nobody would know. Logged, then retried with back-off."""
        try:
            return step()
        except Exception:
            log.exception("crowdsec: unexpected error in %s", step.__name__)
            return False

    def _pull(self) -> bool:
        assert self.bouncer is not None
        self._protect_lapi()
        startup = not self._synced or self.monotonic() >= self._resync_at
        try:
            stream = parse_stream(self.client.stream(startup), self.cfg.max_decisions)
        except (LapiError, BadStream) as exc:
            result = exc.result if isinstance(exc, LapiError) else "invalid"
            self.pulls[result] += 1
            if result in ("invalid", "refused"):
                self._synced = False  # what LAPI sent is lost: ask for everything again
            self._failed(str(exc), result)
            return False
        try:
            added, removed = self.bouncer.apply(stream, startup)
        except (StoreError, EnforceError) as exc:
            self.pulls["ok"] += 1
            self._synced = False
            log.error("crowdsec: applying decisions failed: %s", exc)
            return False
        self.pulls["ok"] += 1
        self._synced = True
        if startup:
            self._resync_at = self.monotonic() + RESYNC
        self._reachable()
        if added or removed or sum(stream.rejected.values()):
            log.info("crowdsec: %s pull: %d set, %d removed, %d rejected",
                     "full" if startup else "delta", added, removed,
                     sum(stream.rejected.values()))
        return True

    def _heartbeat(self) -> bool:
        """Watcher only: no pulls to show whether LAPI is there."""
        try:
            self.client.heartbeat()
        except LapiError as exc:
            self._failed(str(exc), exc.result)
            return False
        self._reachable()
        return True

    def _push(self) -> bool:
        assert self.watcher is not None
        try:
            exchanged = self.watcher.push(self._stop.is_set)
        except LapiError as exc:
            self._failed(str(exc), exc.result)
            return False
        except StoreError as exc:
            log.error("crowdsec: push queue: %s", exc)
            return False
        if exchanged:
            self._reachable()
        return True

    def _protect_lapi(self) -> None:
        """Never ban the LAPI server itself: that would cut off the unban."""
        assert self.bouncer is not None
        if self.bouncer.protected:
            return
        host = urlsplit(self.cfg.lapi_url).hostname or ""
        try:
            addrs = {ipaddress.ip_address(host)}
        except ValueError:
            try:
                addrs = {ipaddress.ip_address(info[4][0].split("%")[0])
                         for info in socket.getaddrinfo(host, None)}
            except (OSError, ValueError):
                return  # the pull itself will fail and say why
        self.bouncer.protected = [ipaddress.ip_network(a) for a in addrs]

    def _failed(self, reason: str, result: str) -> None:
        """Logged when LAPI starts failing, then every DOWN_LOG_EVERY seconds."""
        self.up = 0
        now = self.monotonic()
        if now >= self._next_down_log:
            self._next_down_log = now + DOWN_LOG_EVERY
            log.warning("crowdsec: %s (%s); inspection and local bans go on, retrying with "
                        "back-off up to %gs", reason, result, self.cfg.retry_max)

    def _reachable(self) -> None:
        if self._next_down_log:
            log.info("crowdsec: LAPI %s answers again", self.cfg.lapi_url)
        self._next_down_log = 0.0
        self.up = 1

    @staticmethod
    def _guard(fn: Callable[[], object]) -> None:
        try:
            fn()
        except (StoreError, EnforceError) as exc:
            log.error("crowdsec: %s", exc)
