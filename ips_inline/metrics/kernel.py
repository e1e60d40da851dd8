"""NFQUEUE counters read from the kernel at scrape time. Optional: when the
file or the queue is missing, the collector omits the samples."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

# Per network namespace: /proc/net is /proc/self/net, so reading it from the
# daemon's own process (the scrape thread) shows the queue the daemon bound.
NFQUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue"


@dataclass(frozen=True)
class QueueCounters:
    # With fail-open set, a full queue or socket accepts packets uninspected and
    # the kernel counts them nowhere here; only length nearing maxlen shows it.
    length: int  # packets waiting for a verdict now
    dropped: int  # dropped because the queue was full
    user_dropped: int  # dropped because our netlink socket buffer was full
    id_sequence: int  # last packet id handed out: packets queued so far (u32, wraps)


def parse_nfqueue(text: str) -> dict[int, QueueCounters]:
    """Lines of: queue number, portid, queue length, copy mode, copy range,
    queue dropped, user dropped, id sequence, 1. Bad lines are skipped."""
    out: dict[int, QueueCounters] = {}
    for line in text.splitlines():
        try:
            num, _portid, length, _mode, _range, dropped, user, seq = map(int, line.split()[:8])
        except ValueError:  # short or non-numeric line
            continue
        out[num] = QueueCounters(length, dropped, user, seq)
    return out


def read_nfqueue(queues: Collection[int], path: str | Path = NFQUEUE_PROC) -> QueueCounters | None:
    """The given queues' counters summed (one per worker with --queue-balance),
    or None if the file is absent or none of them is bound."""
    try:
        table = parse_nfqueue(Path(path).read_text())
    except OSError:
        return None
    found = [table[q] for q in queues if q in table]
    if not found:
        return None
    return QueueCounters(sum(c.length for c in found), sum(c.dropped for c in found),
                         sum(c.user_dropped for c in found), sum(c.id_sequence for c in found))

