"""Signal wiring shared by the daemon and the worker supervisor."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

Handler = Callable[[int, object], None]


class SignalWake:
    """A socket pair the signal machinery writes a byte to on each signal
    (set_wakeup_fd, from creation until close), so a select() loop wakes at
    once instead of at its next timeout.

    Both ends live as long as this object: set_wakeup_fd() keeps only the
    write end's number, and a collected write end would close it, leaving
    the read end readable (EOF) forever and the loop spinning."""

    def __init__(self) -> None:
        self.r, self._w = socket.socketpair()
        self._w.setblocking(False)
        self.r.setblocking(False)
        signal.set_wakeup_fd(self._w.fileno())

    def fileno(self) -> int:
        return self.r.fileno()

    def clear(self) -> None:
        """Read the pending wake-up bytes."""
        try:
            while self.r.recv(64):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.r.close()
        self._w.close()


def catch_signals(on_stop: Handler, on_hup: Handler) -> SignalWake:
    """SIGTERM/SIGINT -> on_stop, SIGHUP -> on_hup; returns the wake-up to
    select() on (keep it until the loop ends, then close it)."""
    wake = SignalWake()
    handle_signals(on_stop, on_hup)
    return wake


def handle_signals(on_stop: Handler, on_hup: Handler) -> None:
    """The handlers alone, for a loop that wakes up on its own (a blocking
    call interrupted by a signal runs the handler, then resumes)."""
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
