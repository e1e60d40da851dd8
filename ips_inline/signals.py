"""Signal wiring shared by the daemon and the worker supervisor."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

Handler = Callable[[int, object], None]


def catch_signals(on_stop: Handler, on_hup: Handler) -> socket.socket:
    """SIGTERM/SIGINT -> on_stop, SIGHUP -> on_hup. Returns a socket that
    becomes readable on each signal, so a select() loop wakes at once instead
    of at its next timeout."""
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    return wake_r
