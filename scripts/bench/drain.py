"""Drain test: a consumer's capacity without the sender competing for the CPUs.

Stop the consumer (SIGSTOP, its whole process tree), send a bounded burst so a
backlog builds in the kernel queue(s), confirm it in nfnetlink_queue, continue
the consumer (SIGCONT) and time until every queue is empty: backlog / time.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchlab import BenchError, BenchLab, signal_pids, signal_tree

from ips_inline.metrics.kernel import QueueCounters

POLL = 0.0005  # seconds between reads of the queue counters while draining
SETTLE = 0.05  # the backlog must stay unchanged this long before the drain starts


@dataclass
class Drain:
    sent: int
    backlog: dict[int, int]  # queue -> packets waiting when the consumer resumed
    seconds: float
    queue_dropped: int  # queue full during the burst
    user_dropped: int  # netlink socket buffer full during the burst

    @property
    def total(self) -> int:
        return sum(self.backlog.values())

    @property
    def unqueued(self) -> int:
        """Sent but neither queued nor counted as dropped: passed by fail-open."""
        return max(0, self.sent - self.total - self.queue_dropped - self.user_dropped)

    @property
    def kpps(self) -> float:
        return self.total / self.seconds / 1000 if self.seconds > 0 else 0.0


def _lengths(stats: dict[int, QueueCounters], queues: Sequence[int]) -> dict[int, int]:
    return {q: stats[q].length if q in stats else -1 for q in queues}


def _wait(lab: BenchLab, queues: Sequence[int], done: Callable[[dict[int, int]], bool],
          timeout: float, what: str) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        lengths = _lengths(lab.queues(), queues)
        if done(lengths):
            return lengths
        if any(v < 0 for v in lengths.values()):
            raise BenchError(f"{what}: a queue was unbound (consumer died?): {lengths}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: queue lengths {lengths} after {timeout:.0f}s")
        time.sleep(POLL)


def _settle(lab: BenchLab, queues: Sequence[int], timeout: float = 10) -> dict[int, int]:
    """Queue lengths once they stopped growing (the burst is fully enqueued)."""
    last = _lengths(lab.queues(), queues)
    stable_since = time.monotonic()
    deadline = stable_since + timeout
    while time.monotonic() - stable_since < SETTLE and time.monotonic() < deadline:
        time.sleep(0.005)
        now = _lengths(lab.queues(), queues)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def _sent(output: str) -> int:
    words = output.split()
    return int(words[words.index("sent") + 1]) if "sent" in words else 0


def drain_once(lab: BenchLab, pid: int, queues: Sequence[int], send: Sequence[str],
               timeout: float = 120) -> Drain:
    """One stop / burst / continue / drain cycle; `send` is the sender argv (client)."""
    _wait(lab, queues, lambda ls: all(v == 0 for v in ls.values()), 30, "queue not idle")
    before = lab.queues()
    pids = signal_tree(pid, signal.SIGSTOP)
    try:
        time.sleep(0.05)
        sent = _sent(lab.run("client", send, timeout=timeout).stdout)
        backlog = _settle(lab, queues)
        mid = lab.queues()
    finally:
        start = time.perf_counter()
        signal_pids(pids, signal.SIGCONT)
    _wait(lab, queues, lambda ls: all(v == 0 for v in ls.values()), timeout, "drain")
    seconds = time.perf_counter() - start
    if sum(backlog.values()) <= 0:
        raise BenchError(f"no backlog built (sent {sent}): are the rules in place?")
    return Drain(sent, backlog, seconds,
                 sum(mid[q].dropped - before[q].dropped for q in queues if q in before),
                 sum(mid[q].user_dropped - before[q].user_dropped for q in queues if q in before))


def median_drain(runs: list[Drain]) -> Drain:
    """The run with the median rate (its own backlog and drops go with it)."""
    ordered = sorted(runs, key=lambda d: d.kpps)
    return ordered[(len(ordered) - 1) // 2]


def spread(runs: list[Drain]) -> str:
    rates = [d.kpps for d in runs]
    if len(rates) < 2:
        return ""
    return f"{min(rates):.0f}-{max(rates):.0f} over {len(rates)}; sd {statistics.stdev(rates):.0f}"
