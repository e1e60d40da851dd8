"""nfnetlink_queue messages byte for byte, the ACK reader, and the batching
callback, without root (a socketpair stands in for the kernel)."""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from ips_inline.engine import ACCEPT, BLOCK, BYPASS, BYPASS_ACKS, DROP
from ips_inline.sources import nfq_netlink as nl
from ips_inline.sources.nfqueue import Current, Marks, VerdictBatch, make_callback

little_endian = pytest.mark.skipif(sys.byteorder != "little",
                                   reason="expected bytes spell host-order headers little-endian")


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


# -- messages -------------------------------------------------------------------------


def test_attr_pads_to_four_bytes_and_counts_only_header_and_payload() -> None:
    assert nl.attr(1, b"abc") == unhex("0700 0100 616263 00")
    assert nl.attr(2, b"abcd") == unhex("0800 0200 61626364")


@little_endian
def test_config_message_sets_fail_open_and_maxlen() -> None:
    msg = nl.config_message(5, fail_open=True, maxlen=4096, seq=7)
    assert msg == unhex(
        "2c000000 0203 0500 07000000 00000000"  # len 44, QUEUE<<8|CONFIG, REQUEST|ACK, seq, port 0
        "| 00 00 0005"  # AF_UNSPEC, NFNETLINK_V0, res_id = queue 5 big-endian
        "| 0800 0300 00001000"  # NFQA_CFG_QUEUE_MAXLEN = 4096 big-endian
        "| 0800 0400 00000001"  # NFQA_CFG_MASK = FAIL_OPEN
        "| 0800 0500 00000001"  # NFQA_CFG_FLAGS = FAIL_OPEN
    )


@little_endian
def test_config_message_clears_fail_open_under_the_same_mask() -> None:
    msg = nl.config_message(0x0102, fail_open=False, maxlen=8, seq=0)
    assert msg == unhex(
        "2c000000 0203 0500 00000000 00000000 | 00 00 0102"
        "| 0800 0300 00000008 | 0800 0400 00000001 | 0800 0500 00000000"
    )


@little_endian
def test_batch_verdict_message() -> None:
    msg = nl.batch_verdict_message(0x0102, nl.NF_ACCEPT, 0x01020304)
    assert msg == unhex(
        "20000000 0303 0100 00000000 00000000"  # len 32, QUEUE<<8|VERDICT_BATCH, REQUEST, no ACK
        "| 00 00 0102"
        "| 0c00 0200 00000001 01020304"  # NFQA_VERDICT_HDR {verdict, id} big-endian
    )
    assert nl.batch_prefix(0x0102) == msg[:-8]


# -- ACKs -----------------------------------------------------------------------------

HDR = struct.Struct("=IHHII")


def ack(seq: int, err: int) -> bytes:
    """What the kernel answers: nlmsgerr {-errno, the request's header}."""
    request = HDR.pack(44, 0x0302, 5, seq, 0)
    return HDR.pack(16 + 4 + 16, nl.NLMSG_ERROR, 0x100, seq, 4242) + struct.pack("=i", -err) \
        + request


def packet_message(packet_id: int) -> bytes:
    body = struct.pack("!BBH", socket.AF_INET, 0, 0) + nl.attr(1, struct.pack("!IHB", packet_id,
                                                                              0x0800, 1))
    return HDR.pack(16 + len(body), 0x0300, 0, 0, 0) + body


def test_ack_errno_reads_only_the_answer_to_our_sequence() -> None:
    assert nl.ack_errno(ack(7, 0), 7) == 0
    assert nl.ack_errno(ack(7, errno.EPERM), 7) == errno.EPERM
    assert nl.ack_errno(ack(8, 0), 7) is None
    assert nl.ack_errno(packet_message(1), 7) is None
    assert nl.ack_errno(packet_message(1) + ack(7, errno.EINVAL), 7) == errno.EINVAL
    assert nl.ack_errno(b"\x03\x00", 7) is None
    assert nl.ack_errno(HDR.pack(0, 2, 0, 7, 0), 7) is None  # a zero length stops the walk


@pytest.fixture
def kernel() -> Iterator[tuple[nl.QueueControl, socket.socket]]:
    """A QueueControl on one end of a datagram socketpair; the test plays the kernel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    control = nl.QueueControl(ours.fileno(), 5)
    ours.close()  # QueueControl holds its own dup, as with NetfilterQueue's fd
    control._seq = 6  # the next request carries seq 7
    try:
        yield control, theirs
    finally:
        control.close()
        theirs.close()


def test_configure_keeps_packets_read_before_the_ack(kernel) -> None:
    control, peer = kernel
    early = [packet_message(1), packet_message(2)]
    for datagram in (*early, ack(7, 0), packet_message(3)):
        peer.send(datagram)
    backlog: list[bytes] = []
    control.configure(fail_open=True, maxlen=4096, backlog=backlog)
    assert peer.recv(100) == nl.config_message(5, fail_open=True, maxlen=4096, seq=7)
    assert backlog == early
    assert control.sock.recv(100, socket.MSG_DONTWAIT) == packet_message(3)  # left for run()


def test_configure_raises_one_line_on_a_kernel_error(kernel) -> None:
    control, peer = kernel
    peer.send(ack(7, errno.EPERM))
    with pytest.raises(nl.NfqNetlinkError) as info:
        control.configure(fail_open=False, maxlen=8, backlog=[])
    assert str(info.value) == ("NFQUEUE 5: the kernel rejected the queue config (fail_open, "
                               "queue_maxlen): Operation not permitted (EPERM)")


def test_configure_gives_up_without_an_ack(kernel, monkeypatch) -> None:
    control, peer = kernel
    monkeypatch.setattr(nl, "ACK_TIMEOUT", 0.05)
    peer.send(ack(6, 0))  # an answer to someone else's request
    backlog: list[bytes] = []
    with pytest.raises(nl.NfqNetlinkError, match="no answer from the kernel"):
        control.configure(fail_open=True, maxlen=8, backlog=backlog)
    assert backlog == [ack(6, 0)]


def test_batch_sender_sends_one_message_per_call(kernel) -> None:
    control, peer = kernel
    send = control.batch_sender()
    send(nl.NF_ACCEPT, 41)
    send(nl.NF_DROP, 2**32 - 1)
    assert peer.recv(100) == nl.batch_verdict_message(5, nl.NF_ACCEPT, 41)
    assert peer.recv(100) == nl.batch_verdict_message(5, nl.NF_DROP, 2**32 - 1)


# -- the batching callback ----------------------------------------------------------------


class FakePacket:
    """The part of netfilterqueue.Packet the callback uses, recording verdicts."""

    def __init__(self, packet_id: int, payload: bytes, log: list) -> None:
        self.id = packet_id
        self.payload = payload
        self.mark = 0
        self.log = log
        self.indev = 7

    def get_payload(self) -> bytes:
        return self.payload

    def get_mark(self) -> int:
        return self.mark

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.log.append(("accept", self.id))

    def drop(self) -> None:
        self.log.append(("drop", self.id))

    def repeat(self) -> None:
        self.log.append(("repeat", self.id, self.mark))


def verdict_of(payload: bytes, _now: float, _state: int = 0) -> int:
    if payload == b"boom":
        raise RuntimeError("engine bug")
    return {b"d": DROP, b"b": BYPASS, b"k": BLOCK, b"q": BYPASS_ACKS}.get(payload, ACCEPT)


def run(payloads: list[bytes], batch: VerdictBatch | None, bypass_mark: int = 0x40) -> list:
    log: list = []
    if batch is not None:
        batch.connect(lambda verdict, last: log.append(
            ("accept" if verdict == nl.NF_ACCEPT else "drop", "up to", last)))
    callback = make_callback(verdict_of, lambda _dt: None, Marks(bypass=bypass_mark), batch)
    for packet_id, payload in enumerate(payloads, start=1):
        callback(FakePacket(packet_id, payload, log))
    if batch is not None:
        batch.flush()
    return log


def test_per_packet_mode_verdicts_each_packet_at_once() -> None:
    log = run([b"a", b"d", b"b", b"boom"], None)
    assert log == [("accept", 1), ("drop", 2), ("repeat", 3, 0x40), ("accept", 4)]


def test_batch_mode_sends_each_run_before_the_other_verdict_starts() -> None:
    log = run([b"a", b"d", b"d", b"a", b"b", b"boom", b"a", b"d"], VerdictBatch())
    # A repeat leaves the queue at once; the accept run around it stays one batch.
    # The first accept follows an idle queue: sent alone at once (no batch is coming).
    assert log == [("accept", 1), ("drop", "up to", 3), ("repeat", 5, 0x40),
                   ("accept", "up to", 7), ("drop", "up to", 8)]


def test_batch_mode_flushes_when_the_limit_is_reached() -> None:
    log = run([b"a", b"a", b"a", b"d", b"d", b"d"], VerdictBatch(limit=2))
    assert log == [("accept", 1), ("accept", "up to", 3), ("drop", "up to", 5),
                   ("drop", "up to", 6)]


def test_each_connection_verdict_repeats_with_its_own_mark() -> None:
    marks = Marks(bypass=0x40, ack_bypass=0x20, block=0x10)
    log: list = []
    callback = make_callback(verdict_of, lambda _dt: None, marks, None)
    for packet_id, payload in enumerate([b"b", b"q", b"k"], start=1):
        callback(FakePacket(packet_id, payload, log))
    assert log == [("repeat", 1, 0x40), ("repeat", 2, 0x20), ("repeat", 3, 0x10)]


def test_connection_verdicts_without_their_mark_fall_back() -> None:
    """No mark configured: bypasses are plain accepts, a block a plain drop."""
    log: list = []
    callback = make_callback(verdict_of, lambda _dt: None, Marks(), None)
    for packet_id, payload in enumerate([b"b", b"q", b"k"], start=1):
        callback(FakePacket(packet_id, payload, log))
    assert log == [("accept", 1), ("accept", 2), ("drop", 3)]


def test_the_packet_being_judged_is_known_for_its_input_interface() -> None:
    current = Current()
    seen: list[int] = []
    callback = make_callback(lambda _p, _n, _s: seen.append(current.indev()) or ACCEPT,
                             lambda _dt: None, Marks(), None, 1, current)
    callback(FakePacket(1, b"a", []))
    assert seen == [7] and Current().indev() == 0


def test_the_conntrack_state_comes_from_the_mark() -> None:
    seen: list[int] = []
    callback = make_callback(lambda _p, _n, state: seen.append(state) or ACCEPT,
                             lambda _dt: None, Marks(ct=0x00700000), None)
    pkt = FakePacket(1, b"a", [])
    pkt.mark = 0x00300000 | 0x40000000
    callback(pkt)
    assert seen == [3]


def test_bypass_without_a_mark_is_a_deferred_accept() -> None:
    assert run([b"b", b"a"], VerdictBatch(), bypass_mark=0) == [("accept", 1),
                                                                ("accept", "up to", 2)]


def test_an_accept_after_an_idle_gap_is_sent_at_once(monkeypatch) -> None:
    from ips_inline.sources import nfqueue

    times = iter([10.0, 10.0, 10.0001, 10.0001, 10.0002, 10.0002, 10.01, 10.01])
    monkeypatch.setattr(nfqueue.time, "time", lambda: next(times))
    log = run([b"a", b"a", b"a", b"a"], VerdictBatch())
    # 1 after idle: alone, at once; 2 and 3 close behind: batched; 4 after a
    # 9.8 ms gap is sent at once, its batch covering 2 and 3.
    assert log == [("accept", 1), ("accept", "up to", 4)]


def test_a_failed_batch_is_logged_and_the_next_covers_it(caplog) -> None:
    sent: list[int] = []

    def flaky(_verdict: int, last: int) -> None:
        if not sent:
            sent.append(-1)
            raise OSError(errno.ENOBUFS, "No buffer space available")
        sent.append(last)

    batch = VerdictBatch()
    batch.connect(flaky)
    batch.accepts.extend([1, 2])
    batch.flush()
    assert "batch verdict up to id 2 failed" in caplog.text
    batch.accepts.append(3)
    batch.flush()
    batch.flush()  # nothing pending: nothing sent
    assert sent == [-1, 3]


@pytest.mark.parametrize(("sample", "timed"), [(1, 20), (8, 2), (32, 0)])
def test_one_packet_in_sample_is_timed(sample: int, timed: int) -> None:
    seen: list[float] = []
    batch = VerdictBatch()
    batch.connect(lambda _verdict, _last: None)
    callback = make_callback(verdict_of, seen.append, Marks(bypass=0x40), batch, sample)
    for packet_id in range(1, 21):
        callback(FakePacket(packet_id, b"a", []))
    assert len(seen) == timed and all(0 <= dt < 1 for dt in seen)


def test_in_blocking_mode_a_packet_close_behind_another_starts_a_burst(monkeypatch) -> None:
    from ips_inline.sources import nfqueue

    times = iter([10.0, 10.0, 10.0001, 10.0001, 10.0002, 10.0002])
    monkeypatch.setattr(nfqueue.time, "time", lambda: next(times))
    log: list = []
    batch = VerdictBatch()
    batch.connect(lambda verdict, last: log.append(("batch", verdict, last)))
    callback = make_callback(verdict_of, lambda _dt: None, Marks(bypass=0x40), batch)
    callback(FakePacket(1, b"a", log))  # in drain(): an idle gap before it, sent alone
    batch.begin_wait(until=11.0)
    callback(FakePacket(2, b"a", log))  # it ends the wait: answered at once, however close
    with pytest.raises(nfqueue.EndWait):
        callback(FakePacket(3, b"a", log))  # close behind: deferred, then drain() the rest
    assert log == [("accept", 1), ("accept", 2)] and batch.accepts == [3]


def test_in_blocking_mode_steady_traffic_ends_the_wait_when_its_time_is_up(monkeypatch) -> None:
    from ips_inline.sources import nfqueue

    # One packet every 10 ms: each after an idle gap, so none starts a burst,
    # and the socket never times out either; the deadline must end the wait.
    times = iter(t for n in range(4) for t in (10.0 + n / 100,) * 2)
    monkeypatch.setattr(nfqueue.time, "time", lambda: next(times))
    log: list = []
    batch = VerdictBatch()
    batch.connect(lambda verdict, last: log.append(("batch", verdict, last)))
    callback = make_callback(verdict_of, lambda _dt: None, Marks(bypass=0x40), batch)
    batch.begin_wait(until=10.025)
    callback(FakePacket(1, b"a", log))
    callback(FakePacket(2, b"a", log))
    callback(FakePacket(3, b"a", log))
    with pytest.raises(nfqueue.EndWait):
        callback(FakePacket(4, b"a", log))  # 10.03: past the deadline
    assert log == [("accept", 1), ("accept", 2), ("accept", 3), ("accept", 4)]


def test_a_drop_after_an_idle_gap_is_not_held(monkeypatch) -> None:
    from ips_inline.sources import nfqueue

    times = iter([10.0, 10.0, 10.0001, 10.0001, 10.0002, 10.0002, 10.5, 10.5])
    monkeypatch.setattr(nfqueue.time, "time", lambda: next(times))
    log: list = []
    batch = VerdictBatch()
    batch.connect(lambda verdict, last: log.append(
        ("accept" if verdict == nl.NF_ACCEPT else "drop", "up to", last)))
    callback = make_callback(verdict_of, lambda _dt: None, Marks(bypass=0x40), batch)
    for packet_id in range(1, 5):  # d (idle), d, d close behind (a run), d 0.5 s later
        callback(FakePacket(packet_id, b"d", log))
    assert log == [("drop", "up to", 1), ("drop", "up to", 4)]
