"""The live Enforcer: bans leave the verdict path through a queue and are
applied to the kernel ipset and the ban store by one worker thread (the only
thread that touches the netlink socket, see ipset.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from .ipset import EnforceError, IpsetEnforcer, SetFull
from .store import BanStore, StoreError

log = logging.getLogger(__name__)
_QUEUE_MAX = 4096  # pending bans; more than the per-minute cap ever produces
COUNT_EVERY = 1.0  # seconds between refreshes of the kernel set's entry count
_BATCH = 256  # bans applied before one state-file write (the write is O(all bans))


@dataclass
class BanFailures:
    """Bans that did not reach the kernel, by reason (exported as metrics)."""

    set_full: int = 0
    netlink: int = 0


class LiveEnforcer:
    def __init__(self, ipset: IpsetEnforcer, store: BanStore, failures: BanFailures) -> None:
        self.ipset = ipset
        self.store = store
        self.failures = failures
        self.active_count: int | None = None  # entries in the kernel sets, refreshed by the worker
        self._jobs: queue.Queue = queue.Queue(_QUEUE_MAX)
        self._thread = threading.Thread(target=self._work, name="ban-worker", daemon=True)
        self._started = threading.Event()

    def start(self, first: object = None) -> None:
        """Start the worker; `first` (a callable) runs in it before any ban,
        e.g. restoring bans from the store into the set."""
        self._first = first
        self._thread.start()
        self._started.wait(30)

    def ban(self, ip: str, duration: int, detector: str, count: int) -> None:
        try:
            self._jobs.put_nowait(("ban", ip, duration, detector, count))
        except queue.Full:
            self.failures.netlink += 1
            log.error("ban queue full: %s not banned", ip)

    def call(self, fn, *args) -> None:
        """Run fn(ipset, *args) in the worker thread, off the verdict path."""
        self._jobs.put(("call", fn, args))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)

    def _work(self) -> None:
        try:
            if self._first is not None:
                self._first(self.ipset)
        except (EnforceError, StoreError) as exc:
            log.error("restoring bans failed: %s", exc)
        finally:
            self._started.set()
        counted = 0.0
        while True:
            try:
                job = self._jobs.get(timeout=COUNT_EVERY)
            except queue.Empty:
                job = ()
            if job is None:
                break
            if job and job[0] == "call":
                self._guard(job[1], self.ipset, *job[2])
            elif job and not self._bans(job):
                break
            # The count costs netlink round trips: at most once a second.
            if self._jobs.empty() and time.monotonic() - counted >= COUNT_EVERY:
                counted = time.monotonic()
                self._refresh_count()
        self.ipset.close()

    def _bans(self, job: tuple) -> bool:
        """Apply this ban and those queued behind it, then write the store
        once: in a ban storm this thread shares the GIL with the verdict
        loop, and a write per ban would cost O(bans) each. False: stop."""
        done = []
        while job and job[0] == "ban":
            if self._apply(*job[1:]):
                done.append(job[1:])
            if len(done) >= _BATCH:
                break
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                job = ()
        now = time.time()
        if done:
            self._guard(lambda _s: self.store.record_bans(
                [(ip, now + duration, detector, count) for ip, duration, detector, count in done]),
                self.ipset)
        if job and job[0] == "call":
            self._guard(job[1], self.ipset, *job[2])
        return job is not None

    def _apply(self, ip: str, duration: int, detector: str, count: int) -> bool:
        try:
            self.ipset.add(ip, duration)
        except SetFull:
            self.failures.set_full += 1
            log.error("ban set full: %s not banned (raise live.maxelem)", ip)
            return False
        except EnforceError as exc:
            self.failures.netlink += 1
            log.error("ban of %s failed: %s", ip, exc)
            return False
        log.info("banned %s for %ds (%s, ban #%d)", ip, duration, detector, count)
        return True

    def _refresh_count(self) -> None:
        try:
            self.active_count = self.ipset.count()
        except EnforceError:
            self.active_count = None

    @staticmethod
    def _guard(fn, *args) -> None:
        try:
            fn(*args)
        except (EnforceError, StoreError) as exc:
            log.error("%s", exc)
