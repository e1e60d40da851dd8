"""QueueSource against the real kernel, in a namespace each test creates and deletes.

Loopback only, one INPUT rule inside the namespace: the host's chains are never
touched. Traffic is a bounded number of UDP datagrams; the kernel's view comes
from /proc/net/netfilter/nfnetlink_queue, which is per network namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
MARK = "0x40000000"

PRELUDE = """
import json, socket, time
from ips_inline.engine import ACCEPT, BYPASS, DROP
from ips_inline.sources.nfqueue import Marks, QueueSource, make_callback
DST = ("10.99.0.1", 9999)
MARK = 0x40000000

def counters():
    fields = open("/proc/net/netfilter/nfnetlink_queue").read().split()
    return {"length": int(fields[2]), "dropped": int(fields[5]), "user_dropped": int(fields[6])}

def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: room for every datagram
    sock.bind(DST)
    sock.setblocking(False)
    return sock

def send(numbers):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in numbers:
            sock.sendto(b"%d" % n, DST)

def wait(done, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)

def delivered(sock, got):
    while True:
        try:
            got.append(int(sock.recv(64)))
        except BlockingIOError:
            return got

def verdict(packet, _now, _state=0):
    n = int(packet[28:])  # after the IPv4 and UDP headers
    if n % 7 == 6:
        raise RuntimeError("engine bug")  # the callback's guard accepts it
    return (DROP, DROP, ACCEPT, BYPASS, ACCEPT, ACCEPT)[n % 6]  # runs of each, repeats between

result = None
"""


def expected_delivered(numbers: range) -> list[int]:
    return [n for n in numbers if n % 7 == 6 or n % 6 > 1]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def sh(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True,
                   timeout=30)


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace with 10.99.0.1 on lo, whose UDP port 9999 is queued to queue 0
    (bypass-marked packets accepted first, as the real rules do); deleted
    afterwards, also on failure."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"ipst-nfq-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        sh(name, "ip", "link", "set", "lo", "up")
        sh(name, "ip", "addr", "add", "10.99.0.1/32", "dev", "lo")
        udp = ("-p", "udp", "--dport", "9999")
        sh(name, "iptables", "-A", "INPUT", *udp, "-m", "mark", "--mark", f"{MARK}/{MARK}",
           "-j", "ACCEPT")
        sh(name, "iptables", "-A", "INPUT", *udp, "-j", "NFQUEUE", "--queue-num", "0",
           "--queue-bypass")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def py(ns: str, body: str, **params: object) -> dict:
    """Run PRELUDE + params + body in the namespace; body sets `result`."""
    assigns = "".join(f"{key} = {value!r}\n" for key, value in params.items())
    code = PRELUDE + assigns + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=REPO, check=False, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"in-namespace code failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- fail-open --------------------------------------------------------------------------

STALLED_CONSUMER = """
src = QueueSource(0, 8, fail_open=FAIL_OPEN, rcvbuf=1 << 20)
src.bind(make_callback(lambda _b, _t, _s: ACCEPT, lambda _d: None, Marks(), src.batch))
rx = receiver()
send(range(100))  # never drained: the queue holds 8, the rest meets a full queue
got = []
wait(lambda: counters()["length"] + counters()["dropped"] + len(delivered(rx, got)) >= 100)
result = {"delivered": len(got), **counters()}
src.close()
"""


def test_fail_open_accepts_what_a_full_queue_cannot_hold(ns: str) -> None:
    result = py(ns, STALLED_CONSUMER, FAIL_OPEN=True)
    assert result == {"delivered": 92, "length": 8, "dropped": 0, "user_dropped": 0}


def test_fail_closed_drops_what_a_full_queue_cannot_hold(ns: str) -> None:
    result = py(ns, STALLED_CONSUMER, FAIL_OPEN=False)
    assert result == {"delivered": 0, "length": 8, "dropped": 92, "user_dropped": 0}


# -- verdicts ---------------------------------------------------------------------------

MIXED_DRAIN = """
src = QueueSource(0, 1000, fail_open=True, rcvbuf=4 << 20, batch=BATCH)
src.bind(make_callback(verdict, lambda _d: None, Marks(bypass=MARK), src.batch))
rx = receiver()
send(range(300))
wait(lambda: counters()["length"] == 300)
queued = counters()["length"]
getattr(src, READ)()  # 300 packets: runs of accepts and drops batched, repeats single
after_drain = counters()
if src.batch is not None:
    src.control.batch_sender()(1, 1)  # nothing left up to id 1: the kernel answers ENOENT
send(range(300, 330))
wait(lambda: counters()["length"] == 30)
src.drain()  # reads past that error message
got = []
wait(lambda: len(delivered(rx, got)) >= EXPECTED)
time.sleep(0.1)
result = {"queued": queued, "after_drain": after_drain, "end": counters(),
          "delivered": sorted(delivered(rx, got))}
src.close()
"""


@pytest.mark.parametrize(("batch", "read"), [(True, "drain"), (False, "drain"), (True, "wait")],
                         ids=["batch", "per-packet", "blocking-wait-then-burst"])
def test_mixed_verdicts_in_one_drain_all_take_effect(ns: str, batch: bool, read: str) -> None:
    expected = expected_delivered(range(330))
    result = py(ns, MIXED_DRAIN, BATCH=batch, READ=read, EXPECTED=len(expected))
    empty = {"length": 0, "dropped": 0, "user_dropped": 0}
    assert result["queued"] == 300
    assert result["after_drain"] == empty
    assert result["end"] == empty
    assert result["delivered"] == expected


STEADY_TRAFFIC = """
import threading
src = QueueSource(0, 1000, fail_open=True, rcvbuf=4 << 20, batch=BATCH, wait_max=0.1)
src.bind(make_callback(lambda _packet, _now, _s: ACCEPT, lambda _d: None, Marks(bypass=MARK),
                       src.batch))
stop = threading.Event()

def steady():  # a datagram every 5 ms for 3 s at most: never an idle 0.1 s, never a burst
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(600):
            if stop.wait(0.005):
                return
            sock.sendto(b"1", DST)

sender = threading.Thread(target=steady)
sender.start()
took = []
try:
    for _ in range(5):
        start = time.monotonic()
        src.wait()
        took.append(time.monotonic() - start)
finally:
    stop.set()
    sender.join()
result = {"longest": max(took), "sender_done_early": stop.is_set()}
src.close()
"""


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "per-packet"])
def test_wait_returns_under_steady_traffic(ns: str, batch: bool) -> None:
    """The daemon's housekeeping and signal flags run between waits: a wait
    must end after about wait_max even if packets never stop coming."""
    result = py(ns, STEADY_TRAFFIC, BATCH=batch)
    assert result["longest"] < 1.0


PACKETS_BEFORE_THE_ACK = """
src = QueueSource(0, 1000, fail_open=True, rcvbuf=4 << 20)
src.nfq.bind(0, make_callback(verdict, lambda _d: None, Marks(bypass=MARK), src.batch),
             max_len=1000)
rx = receiver()
send(range(30))  # bound, not yet configured: these reach the socket ahead of the ACK
wait(lambda: counters()["length"] == 30)
src._configure(src.nfq.get_fd())
end = counters()
got = []
wait(lambda: len(delivered(rx, got)) >= EXPECTED)
result = {"end": end, "delivered": sorted(got)}
src.close()
"""


def test_packets_read_while_waiting_for_the_config_ack_get_verdicts(ns: str) -> None:
    expected = expected_delivered(range(30))
    result = py(ns, PACKETS_BEFORE_THE_ACK, EXPECTED=len(expected))
    assert result["end"] == {"length": 0, "dropped": 0, "user_dropped": 0}
    assert result["delivered"] == expected
