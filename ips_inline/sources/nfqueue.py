"""Live source: packets from an NFQUEUE, verdicts back to the kernel.

Every packet gets a verdict, whatever happens in the engine: a packet left
without one would sit in the queue until the daemon exits.

ACCEPT and DROP verdicts are batched (VerdictBatch): one
NFQNL_MSG_VERDICT_BATCH per run of equal verdicts (at most BATCH_MAX, and
at the end of each drain) instead of one sendto() per packet. A batch
applies to every packet still queued up to its id, so a run is sent before
a run of the other verdict starts. BYPASS (a repeat with a mark) stays per
packet and is sent at once: it leaves the queue, so no batch covers it.

Waiting (QueueSource.wait) is a blocking recv() inside NetfilterQueue's C
loop, the shortest way from a sleeping daemon to a packet. The packet that
ends a wait, and any that comes after an idle gap, is answered alone, at
once; one close behind another starts a burst: its verdict is deferred and
the callback raises EndWait, which ends the blocking loop so that drain()
reads the rest without blocking and flushes the batch when the socket is
empty. The callback also raises EndWait once the wait's time is up: steady
traffic never lets the socket time out, and the caller must get control
back for its housekeeping and signals.
"""

from __future__ import annotations

import errno
import logging
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from netfilterqueue import NetfilterQueue, Packet

from ..engine import ACCEPT, BLOCK, BYPASS, BYPASS_ACKS, DROP
from .nfq_netlink import NF_ACCEPT, NF_DROP, NfqNetlinkError, QueueControl

log = logging.getLogger(__name__)
# Verdicts deferred at most: bounds the added latency and keeps the packets held
# for a batch far below any sane queue_maxlen.
BATCH_MAX = 64
# A verdict this long after the previous packet is sent at once: the queue was
# idle, so no batch is coming, and waiting for the end of the drain would add
# a recv() to this packet's latency (a held drop would also hold a queue slot).
IDLE_GAP = 0.0005
# Seconds a wait() lasts at most: how soon the caller sees its stop flag.
WAIT_MAX = 0.2


class QueueError(Exception):
    """The queue cannot be bound; one line for the user."""


class EndWait(Exception):  # noqa: N818 - a signal between our own functions, not an error
    """Raised by the callback in blocking mode to end the wait: more packets
    follow this one (drain() reads them, batching), or the wait's time is up."""


class VerdictBatch:
    """ACCEPT and DROP verdicts deferred to batch verdicts.

    The kernel keeps queued packets in id order and a batch verdict applies to
    every packet still queued with an id up to the given one, so sending the
    last id of a run gives exactly that run its verdict: packets repeated
    meanwhile already left the queue. At most one run is pending: a packet
    with the other verdict flushes it first (else a drop batch would take the
    pending accepts with it, or an accept batch the pending drops). The
    callback appends ids (a C call); ids only grow (modulo 2**32, which the
    kernel handles)."""

    __slots__ = ("accepts", "drops", "limit", "_send", "waiting", "until", "last")

    def __init__(self, limit: int = BATCH_MAX) -> None:
        self.accepts: list[int] = []
        self.drops: list[int] = []
        self.limit = limit
        self._send: Callable[[int, int], None] | None = None
        self.waiting = False  # in QueueSource.wait(), not drain(): the callback may end it
        self.until = 0.0  # when the wait is over, however steady the traffic
        self.last = 0.0  # when the previous packet came

    def begin_wait(self, until: float) -> None:
        """The packet that ends a wait counts as after an idle gap: nothing is
        known to follow it."""
        self.waiting, self.until, self.last = True, until, 0.0

    def connect(self, send: Callable[[int, int], None]) -> None:
        """send(verdict, last_id), verdict NF_ACCEPT or NF_DROP."""
        self._send = send

    def flush(self) -> None:
        for ids, verdict in ((self.accepts, NF_ACCEPT), (self.drops, NF_DROP)):
            if not ids or self._send is None:
                continue
            last = ids[-1]
            ids.clear()
            try:
                self._send(verdict, last)
            except OSError as exc:
                # Those packets stay queued until the next batch covers them,
                # whatever its verdict; as with a failed single verdict.
                log.error("NFQUEUE batch verdict up to id %d failed: %s", last, exc)


@dataclass(frozen=True)
class Marks:
    """The packet-mark bits the rules and the daemon agree on (live.* config):
    verdicts that change how the kernel treats the rest of a connection
    (bypass, bypass of data-less segments, block) repeat the packet through
    INPUT with their bit set, where the rules save it to the connmark; the
    conntrack state arrives in the `ct` bits (packet/conntrack.py)."""

    bypass: int = 0
    ack_bypass: int = 0
    block: int = 0
    ct: int = 0x07000000

    @property
    def ct_shift(self) -> int:
        return (self.ct & -self.ct).bit_length() - 1


def _repeat_marks(marks: Marks) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per verdict: the mark a repeat carries (0: no repeat), and the plain
    verdict (ACCEPT or DROP) it falls back to when its mark is off."""
    repeat = {DROP: 0, ACCEPT: 0, BYPASS: marks.bypass, BYPASS_ACKS: marks.ack_bypass,
              BLOCK: marks.block}
    plain = {DROP: DROP, ACCEPT: ACCEPT, BYPASS: ACCEPT, BYPASS_ACKS: ACCEPT, BLOCK: DROP}
    order = sorted(repeat)
    return tuple(repeat[v] for v in order), tuple(plain[v] for v in order)


class Current:
    """The packet being judged, for what the engine asks about it only now and
    then (the input interface, for an alert): one store per packet."""

    __slots__ = ("pkt",)

    def __init__(self) -> None:
        self.pkt: Packet | None = None

    def indev(self) -> int:
        return self.pkt.indev if self.pkt is not None else 0


def make_callback(process: Callable[[bytes, float, int], int],
                  observe: Callable[[float], None], marks: Marks,
                  batch: VerdictBatch | None = None, sample: int = 1,
                  current: Current | None = None) -> Callable:
    """The per-packet hot path: bytes, wall time and conntrack state in,
    verdict out.

    One packet in `sample` is timed for `observe` (the verdict histogram):
    the second clock read and the observation cost about 5% of a small
    packet's time in the daemon, and a sample shows the same distribution.

    BYPASS, BYPASS_ACKS and BLOCK: the packet goes back through INPUT
    (NF_REPEAT) carrying its mark bit, where the rules save it to the
    connmark and accept (or drop, for BLOCK); later packets of the connection
    are handled by the connmark rules, unqueued.
    With `batch`, ACCEPT and DROP are deferred (QueueSource.drain flushes)."""
    clock = time.time
    repeat_mark, plain = _repeat_marks(marks)
    shift = marks.ct_shift
    here = current if current is not None else Current()

    def single(pkt: Packet, verdict: int) -> None:
        mark = repeat_mark[verdict]
        if mark:
            pkt.set_mark(pkt.get_mark() | mark)
            pkt.repeat()
        elif plain[verdict] == DROP:
            pkt.drop()
        else:
            pkt.accept()

    left = sample  # packets until the next timed one

    if batch is None:
        def on_packet(pkt: Packet) -> None:
            nonlocal left
            start = clock()  # the engine's time and the latency start: one read
            here.pkt = pkt
            try:
                verdict = process(pkt.get_payload(), start, (pkt.get_mark() >> shift) & 7)
            except BaseException:  # the engine never raises; this is the last guard
                verdict = ACCEPT
            single(pkt, verdict)
            left -= 1
            if not left:
                left = sample
                observe(clock() - start)

        return on_packet

    # Batched: the common verdicts are an inlined append (this runs per packet).
    accepts, drops, limit, flush = batch.accepts, batch.drops, batch.limit, batch.flush

    def on_packet_batched(pkt: Packet) -> None:
        nonlocal left
        start = clock()
        here.pkt = pkt
        try:
            verdict = process(pkt.get_payload(), start, (pkt.get_mark() >> shift) & 7)
        except BaseException:
            verdict = ACCEPT
        idle, batch.last = start - batch.last > IDLE_GAP, start
        if repeat_mark[verdict]:
            single(pkt, verdict)  # leaves the queue at once: no batch covers it
        elif plain[verdict] == ACCEPT:
            if drops:
                flush()
            if idle and not accepts:
                pkt.accept()  # alone after an idle queue: the shortest path to the kernel
            else:
                accepts.append(pkt.id)
                if idle or len(accepts) >= limit:
                    flush()
        else:
            if accepts:
                flush()
            drops.append(pkt.id)
            if idle or len(drops) >= limit:
                flush()  # idle: no batch is coming, and a held packet holds a queue slot
        left -= 1
        if not left:
            left = sample
            observe(clock() - start)
        if batch.waiting and (not idle or start >= batch.until):
            raise EndWait  # this packet is handled; drain() takes the rest

    return on_packet_batched


class _Replay:
    """Datagrams read off the socket before the config ACK, handed back to
    NetfilterQueue.run_socket() as if read from the socket."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self._datagrams = iter(datagrams)

    def recv(self, _size: int) -> bytes:
        for datagram in self._datagrams:
            return datagram
        raise BlockingIOError(errno.EAGAIN, "replayed")  # ends run_socket()


class QueueSource:
    def __init__(self, queue_num: int, maxlen: int, fail_open: bool = True,
                 rcvbuf: int = 8 << 20, batch: bool = True, wait_max: float = WAIT_MAX) -> None:
        self.queue_num = queue_num
        self.maxlen = maxlen
        self.fail_open = fail_open
        self.rcvbuf = rcvbuf
        self.wait_max = wait_max  # wait() returns after this long without packets
        self.nfq = NetfilterQueue()
        self.batch = VerdictBatch() if batch else None
        self.control: QueueControl | None = None

    def bind(self, callback: Callable) -> int:
        """Bind the queue and apply rcvbuf, max length and fail-open; returns
        the netlink fd to poll."""
        try:
            self.nfq.bind(self.queue_num, callback, max_len=self.maxlen)
        except OSError:
            raise QueueError(f"cannot bind NFQUEUE {self.queue_num}: it is already bound by "
                             "another process (another ips-inline?)") from None
        fd = self.nfq.get_fd()
        try:
            self._configure(fd)
        except (OSError, NfqNetlinkError) as exc:
            self.close()
            raise QueueError(f"cannot configure NFQUEUE {self.queue_num}: {exc}") from None
        return fd

    def _configure(self, fd: int) -> None:
        self.control = control = QueueControl(fd, self.queue_num)
        granted = control.set_rcvbuf(self.rcvbuf)
        if granted < self.rcvbuf:
            log.warning("NFQUEUE %d: socket receive buffer %d bytes, %d requested",
                        self.queue_num, granted, self.rcvbuf)
        if self.batch is not None:
            self.batch.connect(control.batch_sender())
        control.set_recv_timeout(self.wait_max)
        backlog: list[bytes] = []
        try:
            control.configure(fail_open=self.fail_open, maxlen=self.maxlen, backlog=backlog)
        finally:
            if backlog:  # packets queued before the ACK: verdict them now
                self.nfq.run_socket(_Replay(backlog))
                self._flush()

    def wait(self) -> None:
        """Handle packets for about `wait_max` at most: block until some come
        (SO_RCVTIMEO ends an idle wait), handle them, and return."""
        if self.batch is None:  # per-packet verdicts: no callback to end the wait
            select.select([self.nfq.get_fd()], [], [], self.wait_max)
            self.drain()
            return
        self.batch.begin_wait(time.time() + self.wait_max)
        try:
            self.nfq.run(block=True)  # returns on EAGAIN: SO_RCVTIMEO passed
        except EndWait:
            pass  # that packet is handled; the rest are read without blocking
        finally:
            self.batch.waiting = False
        self.drain()  # flushes, so nothing is left pending while the daemon sleeps

    def drain(self) -> None:
        """Verdict every packet waiting on the socket, then return."""
        try:
            self.nfq.run(block=False)
        finally:
            self._flush()

    def _flush(self) -> None:
        if self.batch is not None:
            self.batch.flush()

    def close(self) -> None:
        # Unbinding hands the queue back to the kernel: with --queue-bypass,
        # traffic flows uninspected until a daemon binds again.
        self._flush()
        self.nfq.unbind()
        if self.control is not None:
            self.control.close()
            self.control = None
