"""Live source: packets from an NFQUEUE, verdicts back to the kernel.

Every packet gets a verdict, whatever happens in the engine: a packet left
without one would sit in the queue until the daemon exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netfilterqueue import NetfilterQueue

from ..engine import ACCEPT, DROP


class QueueError(Exception):
    """The queue cannot be bound; one line for the user."""


def make_callback(process: Callable[[bytes, float], int],
                  observe: Callable[[float], None], bypass_mark: int) -> Callable:
    """The per-packet hot path: bytes and wall time in, verdict out.

    BYPASS: the packet goes back through INPUT (NF_REPEAT) carrying the
    bypass mark, where the rules save it to the connmark and accept; later
    packets of the connection are accepted by the connmark rule, unqueued."""
    clock = time.time
    perf = time.perf_counter

    def on_packet(pkt) -> None:
        start = perf()
        try:
            verdict = process(pkt.get_payload(), clock())
        except BaseException:  # the engine never raises; this is the last guard
            verdict = ACCEPT
        if verdict == ACCEPT:
            pkt.accept()
        elif verdict == DROP:
            pkt.drop()
        elif bypass_mark:
            pkt.set_mark(pkt.get_mark() | bypass_mark)
            pkt.repeat()
        else:
            pkt.accept()
        observe(perf() - start)

    return on_packet


class QueueSource:
    def __init__(self, queue_num: int, maxlen: int) -> None:
        self.queue_num = queue_num
        self.maxlen = maxlen
        self.nfq = NetfilterQueue()

    def bind(self, callback: Callable) -> int:
        """Bind the queue; returns the netlink fd to poll."""
        try:
            self.nfq.bind(self.queue_num, callback, max_len=self.maxlen)
        except OSError:
            raise QueueError(f"cannot bind NFQUEUE {self.queue_num}: it is already bound by "
                             "another process (another ips-inline?)") from None
        return self.nfq.get_fd()

    def drain(self) -> None:
        """Verdict every packet waiting on the socket, then return."""
        self.nfq.run(block=False)

    def close(self) -> None:
        # Unbinding hands the queue back to the kernel: with --queue-bypass,
        # traffic flows uninspected until a daemon binds again.
        self.nfq.unbind()
