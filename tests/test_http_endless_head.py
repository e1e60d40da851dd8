"""A request head longer than engine.http_max_head with no blank line ends the
stream at once: the engine cannot follow it and fails closed for the
connection; nothing more of it is parsed or held. (It used to be cut again
and again in one feed(): an endless loop holding more memory on every turn,
found by scripts/bench_adversarial.py.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from ips_inline.http.stream import HttpStream


class _Stalled(BaseException):
    pass


@contextmanager
def _within(seconds: float) -> Iterator[None]:
    def stalled(_sig: int, _frame: object) -> None:
        raise _Stalled(f"feed() still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, stalled)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_an_endless_head_is_a_stream_error_then_nothing() -> None:
    stream = HttpStream(max_head=1024, max_body=1024)
    head = b"GET / HTTP/1.1\r\nHost: victim\r\n" + b"X-Pad: aaaaaaaaaaaaaaaa\r\n" * 60
    with _within(2.0):
        first = stream.feed(head[:1000])
        cut = stream.feed(head[1000:])
        later = stream.feed(b"X-More: b\r\n\r\n")
    assert first == [] and cut == [] and later == []
    assert stream.error is not None and stream.error.reason == "head_too_long"
    assert stream.buf == b""  # nothing more of the connection is held
